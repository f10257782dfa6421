//! A deployment the lab does not own (DESIGN §4, "deployed"): the same load generator drives
//! infrastructure someone else started (e.g. `docker compose up`, or `loadgen env up
//! --print-deployment`), given only its addresses in a TOML file. Each protocol's processes are
//! either already running (the file names their front and metrics endpoints) or started here by
//! the lab against the file's brokers and databases (`start = "here"`). The lab seeds the data
//! set through the database URLs, drives the front, reads each process's metrics and runs the
//! invariant checker; it cannot place proxies or kill processes, so fault schedules need the
//! local environment.

use crate::run::faults::remote::{FaultsSection, LinkSpec, RoleCommands};
use crate::run::faults::schedule::Role;
use crate::scenario::{from_toml, Protocol, Scenario};
use common::storage::DatabaseUrls;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole file: where the probe measures the floors, and each protocol's processes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub probe: ProbeSection,
    pub twopc: Option<ProtocolSection>,
    #[serde(rename = "saga-orchestrated")]
    pub saga_orchestrated: Option<ProtocolSection>,
    #[serde(rename = "saga-choreographed")]
    pub saga_choreographed: Option<ProtocolSection>,
    /// The deployment's fault backend (Toxiproxy); without it, scenarios with faults are
    /// refused.
    pub faults: Option<FaultsSection>,
}

/// Where the floors are measured.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// A scratch database the probe may create its `probe` table in (never a protocol's).
    pub database: String,
    /// Kafka bootstrap servers (`host:port,...`): the Kafka hop floor, and the brokers of saga
    /// processes started here; needed when a saga protocol is deployed.
    pub kafka: Option<String>,
}

/// One protocol's processes: already running (`front` and `metrics`), or `start = "here"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSection {
    /// The `OrderApi` endpoint, `http://host:port`.
    pub front: Option<String>,
    /// Every process's `Metrics` endpoint, front included.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// `"here"`: the lab starts the protocol's processes itself, on loopback, against the
    /// file's brokers and these databases (instead of `front` and `metrics`).
    pub start: Option<StartWhere>,
    /// The protocol's own databases; seeded afresh before it is measured.
    pub databases: DatabaseUrls,
    /// With `[faults]`: the Toxiproxy proxy on each of the protocol's links.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// With `[faults]`: how to crash and pause each role's process.
    #[serde(default)]
    pub commands: BTreeMap<Role, RoleCommands>,
}

/// Where a protocol's processes are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartWhere {
    /// On this machine, by the lab, from its own binaries.
    Here,
}

impl ProtocolSection {
    /// Whether the lab starts this protocol's processes (`start = "here"`).
    pub fn started_here(&self) -> bool {
        self.start == Some(StartWhere::Here)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("deployment file {path:?}: {field}: cannot reach {address}: {reason}")]
    Unreachable {
        path: PathBuf,
        field: String,
        /// `host:port`, never the URL (which may hold a password).
        address: String,
        reason: String,
    },
    #[error("cannot read deployment file {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("deployment file {path:?}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

impl Deployment {
    pub fn load(path: &Path) -> Result<Deployment, DeploymentError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.into(),
            source,
        })?;
        Deployment::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Deployment, DeploymentError> {
        let invalid = |field: String, reason: String| DeploymentError::Invalid {
            path: path.into(),
            field,
            reason,
        };
        let deployment: Deployment =
            from_toml(text).map_err(|(field, reason)| invalid(field, reason))?;
        deployment
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(deployment)
    }

    /// The section for `protocol`, if the file has one.
    pub fn protocol(&self, protocol: Protocol) -> Option<&ProtocolSection> {
        match protocol {
            Protocol::Twopc => self.twopc.as_ref(),
            Protocol::SagaOrchestrated => self.saga_orchestrated.as_ref(),
            Protocol::SagaChoreographed => self.saga_choreographed.as_ref(),
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        check_postgres_url("probe.database", &self.probe.database)?;
        let sections = [
            Protocol::Twopc,
            Protocol::SagaOrchestrated,
            Protocol::SagaChoreographed,
        ]
        .map(|p| (p, self.protocol(p)));
        if sections.iter().all(|(_, s)| s.is_none()) {
            return Err((
                "(top level)".into(),
                "names no protocol: add a [twopc], [saga-orchestrated] or [saga-choreographed] section".into(),
            ));
        }
        for (protocol, section) in sections {
            let Some(section) = section else { continue };
            let name = protocol.name();
            match (&section.front, section.started_here()) {
                (Some(_), true) => {
                    return Err((
                        format!("{name}.front"),
                        "give either front and metrics (processes already running) or start = \"here\", not both".into(),
                    ))
                }
                (None, true) if !section.metrics.is_empty() => {
                    return Err((
                        format!("{name}.metrics"),
                        "the lab knows the endpoints of processes it starts (start = \"here\"): leave metrics out".into(),
                    ))
                }
                (None, true) => {}
                (None, false) => {
                    return Err((
                        format!("{name}.front"),
                        "missing: the OrderApi endpoint (http://host:port) of the running front, or start = \"here\"".into(),
                    ))
                }
                (Some(front), false) => {
                    check_http_url(&format!("{name}.front"), front)?;
                    if section.metrics.is_empty() {
                        return Err((
                            format!("{name}.metrics"),
                            "list every process's Metrics endpoint (at least the front's)".into(),
                        ));
                    }
                    for (i, url) in section.metrics.iter().enumerate() {
                        check_http_url(&format!("{name}.metrics[{i}]"), url)?;
                    }
                }
            }
            for store in common::storage::Store::ALL {
                check_postgres_url(
                    &format!("{name}.databases.{}", store.name()),
                    section.databases.get(store),
                )?;
            }
            for (role, commands) in &section.commands {
                commands
                    .check()
                    .map_err(|why| (format!("{name}.commands.{}", role.as_str()), why))?;
            }
            if self.faults.is_none() && (!section.links.is_empty() || !section.commands.is_empty())
            {
                return Err((
                    format!("{name}.links"),
                    "links and commands are for fault injection: add [faults] toxiproxy = \"http://host:port\"".into(),
                ));
            }
            if let Some(faults) = &self.faults {
                if let Err(e) = crate::run::faults::toxiproxy::Toxiproxy::new(&faults.toxiproxy) {
                    return Err(("faults.toxiproxy".into(), e.to_string()));
                }
            }
            if protocol != Protocol::Twopc && self.probe.kafka.as_deref().is_none_or(str::is_empty)
            {
                return Err((
                    "probe.kafka".into(),
                    format!("{name} runs on Kafka: give its bootstrap servers (host:port) for the Kafka hop floor"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this deployment can run `scenario` (before anything starts): every protocol it
    /// asks for is deployed, and a fault schedule has a fault backend (`[faults]`).
    pub fn check_scenario(
        &self,
        scenario: &Scenario,
        protocols: &[Protocol],
        path: &Path,
    ) -> Result<(), DeploymentError> {
        if !scenario.faults.is_empty() && self.faults.is_none() {
            return Err(DeploymentError::Invalid {
                path: path.into(),
                field: format!("scenario {:?}: faults", scenario.name),
                reason: "fault injection needs the local environment (the lab's proxies on every link, its own processes to kill) or a fault backend: add [faults] toxiproxy = \"http://host:port\" with each protocol's links; or pick a scenario without [[faults]]".into(),
            });
        }
        if let Some(missing) = protocols.iter().find(|p| self.protocol(**p).is_none()) {
            return Err(DeploymentError::Invalid {
                path: path.into(),
                field: format!("[{}]", missing.name()),
                reason: format!(
                    "scenario {:?} runs {}, but this file does not deploy it; add the section or pick --protocol",
                    scenario.name,
                    missing.name()
                ),
            });
        }
        Ok(())
    }
}

/// How long one entry's TCP connect may take before it counts as unreachable.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Deployment {
    /// Connects (TCP) to every address the run of `protocols` will use, so that a wrong or
    /// unreachable one is one line naming its entry, before anything is seeded or started.
    pub async fn check_reachable(
        &self,
        protocols: &[Protocol],
        path: &Path,
    ) -> Result<(), DeploymentError> {
        let mut entries: Vec<(String, String)> = vec![(
            "probe.database".into(),
            postgres_address(&self.probe.database),
        )];
        if let Some(faults) = &self.faults {
            if let Ok(api) = crate::run::faults::toxiproxy::Toxiproxy::new(&faults.toxiproxy) {
                entries.push(("faults.toxiproxy".into(), api.address().to_string()));
            }
        }
        let uses_kafka = protocols.iter().any(|p| *p != Protocol::Twopc);
        if let (true, Some(kafka)) = (uses_kafka, &self.probe.kafka) {
            for (i, server) in kafka.split(',').enumerate() {
                entries.push((format!("probe.kafka[{i}]"), server.trim().to_string()));
            }
        }
        for &protocol in protocols {
            let Some(section) = self.protocol(protocol) else {
                continue;
            };
            let name = protocol.name();
            if let Some(front) = &section.front {
                entries.push((format!("{name}.front"), http_address(front)));
            }
            for (i, url) in section.metrics.iter().enumerate() {
                entries.push((format!("{name}.metrics[{i}]"), http_address(url)));
            }
            for store in common::storage::Store::ALL {
                entries.push((
                    format!("{name}.databases.{}", store.name()),
                    postgres_address(section.databases.get(store)),
                ));
            }
        }
        for (field, address) in entries {
            let reason =
                match tokio::time::timeout(REACH_TIMEOUT, tokio::net::TcpStream::connect(&address))
                    .await
                {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {REACH_TIMEOUT:?}"),
                };
            return Err(DeploymentError::Unreachable {
                path: path.into(),
                field,
                address,
                reason,
            });
        }
        Ok(())
    }
}

/// `host:port` of a PostgreSQL URL (checked by [`check_postgres_url`]).
fn postgres_address(url: &str) -> String {
    use sqlx::postgres::PgConnectOptions;
    match url.parse::<PgConnectOptions>() {
        Ok(options) => format!("{}:{}", options.get_host(), options.get_port()),
        Err(_) => common::storage::redact(url),
    }
}

/// `host:port` of an `http://host:port` endpoint (checked by [`check_http_url`]).
fn http_address(url: &str) -> String {
    match url.parse::<tonic::transport::Uri>() {
        Ok(uri) => format!(
            "{}:{}",
            uri.host().unwrap_or_default(),
            uri.port_u16().unwrap_or(80)
        ),
        Err(_) => url.to_string(),
    }
}

fn check_http_url(field: &str, url: &str) -> Result<(), (String, String)> {
    let ok = url
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty())
        && url.parse::<tonic::transport::Uri>().is_ok();
    if ok {
        Ok(())
    } else {
        Err((
            field.into(),
            format!("{url:?} is not an endpoint URL; expected http://host:port"),
        ))
    }
}

fn check_postgres_url(field: &str, url: &str) -> Result<(), (String, String)> {
    use sqlx::postgres::PgConnectOptions;
    let scheme = url.starts_with("postgres://") || url.starts_with("postgresql://");
    match url.parse::<PgConnectOptions>() {
        Ok(_) if scheme => Ok(()),
        _ => Err((
            field.into(),
            format!(
                "{:?} is not a PostgreSQL URL; expected postgres://user:password@host:port/dbname",
                common::storage::redact(url)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[probe]
database = "postgres://lab:lab@127.0.0.1:5432/probe"
kafka = "127.0.0.1:9092"

[twopc]
front = "http://127.0.0.1:7000"
metrics = ["http://127.0.0.1:7000", "http://127.0.0.1:7001"]

[twopc.databases]
orders = "postgres://lab:lab@127.0.0.1:5432/twopc_orders"
payments = "postgres://lab:lab@127.0.0.1:5432/twopc_payments"
inventory = "postgres://lab:lab@127.0.0.1:5432/twopc_inventory"
coordinator = "postgres://lab:lab@127.0.0.1:5432/twopc_coordinator"
orchestrator = "postgres://lab:lab@127.0.0.1:5432/twopc_orchestrator"
"#;

    fn error(text: &str) -> String {
        Deployment::parse(text, Path::new("d.toml"))
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn a_full_file_parses() {
        let d = Deployment::parse(FULL, Path::new("d.toml")).unwrap();
        assert_eq!(d.protocol(Protocol::Twopc).unwrap().metrics.len(), 2);
        assert!(d.protocol(Protocol::SagaChoreographed).is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let e = error(&FULL.replace(
            "front = \"http://127.0.0.1:7000\"",
            "front = \"127.0.0.1:7000\"",
        ));
        assert!(
            e.contains("twopc.front") && e.contains("http://host:port"),
            "{e}"
        );
        let e = error(&FULL.replace(
            "coordinator = \"postgres://lab:lab@",
            "coordinator = \"mysql://lab:lab@",
        ));
        assert!(e.contains("twopc.databases.coordinator"), "{e}");
        assert!(!e.contains("lab:lab"), "the password is redacted: {e}");
        let e = error(&FULL.replace(
            "metrics = [\"http://127.0.0.1:7000\", \"http://127.0.0.1:7001\"]",
            "metrics = []",
        ));
        assert!(e.contains("twopc.metrics"), "{e}");
        let e = error(&FULL.replace("[twopc]", "[twopc]\nfrontt = 1"));
        assert!(e.contains("twopc") && e.contains("frontt"), "{e}");
        let e = error(&FULL.replace(
            "payments = \"postgres://lab:lab@127.0.0.1:5432/twopc_payments\"\n",
            "",
        ));
        assert!(
            e.contains("twopc.databases") && e.contains("payments"),
            "{e}"
        );
        let e = error("[probe]\ndatabase = \"postgres://127.0.0.1/probe\"\n");
        assert!(e.contains("names no protocol"), "{e}");
    }

    #[test]
    fn a_saga_section_needs_the_kafka_bootstrap() {
        let saga = FULL
            .replace("kafka = \"127.0.0.1:9092\"\n", "")
            .replace("[twopc]", "[saga-choreographed]")
            .replace("[twopc.databases]", "[saga-choreographed.databases]");
        let e = error(&saga);
        assert!(
            e.contains("probe.kafka") && e.contains("saga-choreographed"),
            "{e}"
        );
    }

    #[test]
    fn a_scenario_with_faults_or_an_undeployed_protocol_is_refused() {
        let d = Deployment::parse(FULL, Path::new("d.toml")).unwrap();
        let dir = crate::run::lab::scenarios_dir();
        let quick = Scenario::load("quick", &dir).unwrap();
        let e = d
            .check_scenario(&quick, &quick.protocols, Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[saga-orchestrated]") || e.contains("[saga-choreographed]"),
            "{e}"
        );
        assert!(d
            .check_scenario(&quick, &[Protocol::Twopc], Path::new("d.toml"))
            .is_ok());
        let faults = Scenario::load("faults", &dir).unwrap();
        let e = d
            .check_scenario(&faults, &[Protocol::Twopc], Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("faults") && e.contains("local environment"),
            "{e}"
        );
    }

    #[test]
    fn a_fault_backend_allows_faults_and_its_entries_are_checked() {
        let with_faults = format!(
            "{FULL}\n[faults]\ntoxiproxy = \"http://lab:pw@127.0.0.1:8474\"\n"
        )
        .replace(
            "[twopc.databases]",
            "links = [{ proxy = \"payment_db\", ends = [\"payment\", \"payment_db\"] }]\n\n\
             [twopc.commands.payment]\ncrash = \"docker kill pay\"\nrestart = \"docker start pay\"\n\n\
             [twopc.databases]",
        );
        let d = Deployment::parse(&with_faults, Path::new("d.toml")).unwrap();
        let twopc = d.protocol(Protocol::Twopc).unwrap();
        assert_eq!(twopc.links[0].ends, [Role::Payment, Role::PaymentDb]);
        assert!(twopc.commands[&Role::Payment].crash.is_some());
        let faults = Scenario::load("faults", &crate::run::lab::scenarios_dir()).unwrap();
        assert!(d
            .check_scenario(&faults, &[Protocol::Twopc], Path::new("d.toml"))
            .is_ok());

        let e = error(&with_faults.replace("restart = \"docker start pay\"\n", ""));
        assert!(
            e.contains("twopc.commands.payment") && e.contains("restart"),
            "{e}"
        );
        let e = error(&with_faults.replace(
            "[faults]\ntoxiproxy = \"http://lab:pw@127.0.0.1:8474\"\n",
            "",
        ));
        assert!(e.contains("twopc.links") && e.contains("[faults]"), "{e}");
        let e = error(&with_faults.replace("http://lab:pw@127.0.0.1:8474", "https://lab:pw@h"));
        assert!(e.contains("faults.toxiproxy") && !e.contains(":pw@"), "{e}");
        let e = error(&with_faults.replace("\"payment_db\"]", "\"payment_database\"]"));
        assert!(e.contains("payment_database"), "{e}");
    }
}
