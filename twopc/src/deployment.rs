//! A whole 2PC deployment on this machine — three participants and a coordinator, each its own
//! process on a loopback port — for tests and the load generator. Crashes are real SIGKILLs and
//! restarts recover from the databases alone.

use crate::branch::ServiceKind;
use crate::coordinator::PrepareOrder;
use common::env::ports::free_port;
use common::env::services::{ServiceProcess, ServiceSpec};
use common::env::EnvError;
use common::storage::DatabaseUrls;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to run the deployment.
#[derive(Clone, Debug)]
pub struct DeploymentConfig {
    /// Where the `coordinator` and `participant` binaries are.
    pub bin_dir: PathBuf,
    /// Where each process's log goes.
    pub log_dir: PathBuf,
    pub databases: DatabaseUrls,
    pub prepare_timeout: Duration,
    pub prepare_order: PrepareOrder,
    /// How long a prepared branch waits before asking the coordinator.
    pub ask_after: Duration,
    pub default_deadline: Duration,
    pub pool_size: u32,
    /// The coordinator's admission limit (`--max-in-flight`).
    pub max_in_flight: u32,
    /// Extra environment for every process (e.g. `TXLAB_FAILPOINTS`, `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl DeploymentConfig {
    pub fn new(
        bin_dir: impl Into<PathBuf>,
        log_dir: impl Into<PathBuf>,
        databases: DatabaseUrls,
    ) -> Self {
        DeploymentConfig {
            bin_dir: bin_dir.into(),
            log_dir: log_dir.into(),
            databases,
            prepare_timeout: Duration::from_millis(500),
            prepare_order: PrepareOrder::Parallel,
            ask_after: Duration::from_millis(1000),
            default_deadline: Duration::from_millis(1000),
            pool_size: 32,
            max_in_flight: 64,
            env: Vec::new(),
        }
    }
}

/// The running processes; all are stopped on drop.
pub struct Deployment {
    config: DeploymentConfig,
    coordinator_addr: SocketAddr,
    participant_addrs: Vec<(ServiceKind, SocketAddr)>,
    /// Where the coordinator reaches a participant, when not directly (a fault proxy).
    to_participant: Vec<(ServiceKind, SocketAddr)>,
    /// Where a participant reaches the coordinator, when not directly (a fault proxy).
    to_coordinator: Vec<(ServiceKind, SocketAddr)>,
    pub coordinator: Option<ServiceProcess>,
    pub participants: Vec<(ServiceKind, Option<ServiceProcess>)>,
}

const READY: Duration = Duration::from_secs(30);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Deployment {
    /// Starts the participants, then the coordinator.
    pub async fn start(config: DeploymentConfig) -> Result<Deployment, EnvError> {
        let mut deployment = Deployment::plan(config)?;
        deployment.launch().await?;
        Ok(deployment)
    }

    /// Chooses every process's address but starts nothing, so routes can be set first.
    pub fn plan(config: DeploymentConfig) -> Result<Deployment, EnvError> {
        for program in ["coordinator", "participant"] {
            if !config.bin_dir.join(program).is_file() {
                return Err(EnvError::Io {
                    what: "finding the 2PC binary (build them with `cargo build --release --workspace --bins`)",
                    path: config.bin_dir.join(program),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
        }
        let port = || {
            free_port().map_err(|source| EnvError::Io {
                what: "finding a free port",
                path: "127.0.0.1".into(),
                source,
            })
        };
        let coordinator_addr = loopback(port()?);
        let mut participant_addrs = Vec::new();
        for kind in ServiceKind::ALL {
            participant_addrs.push((kind, loopback(port()?)));
        }
        Ok(Deployment {
            config,
            coordinator_addr,
            participant_addrs,
            to_participant: Vec::new(),
            to_coordinator: Vec::new(),
            coordinator: None,
            participants: Vec::new(),
        })
    }

    /// Makes the coordinator reach participant `kind` at `via` (set before `launch`).
    pub fn route_to_participant(&mut self, kind: ServiceKind, via: SocketAddr) {
        self.to_participant.retain(|(k, _)| *k != kind);
        self.to_participant.push((kind, via));
    }

    /// Makes participant `kind` reach the coordinator at `via` (set before `launch`).
    pub fn route_to_coordinator(&mut self, kind: ServiceKind, via: SocketAddr) {
        self.to_coordinator.retain(|(k, _)| *k != kind);
        self.to_coordinator.push((kind, via));
    }

    /// Starts the participants, then the coordinator.
    pub async fn launch(&mut self) -> Result<(), EnvError> {
        for kind in ServiceKind::ALL {
            let process = self.start_participant(kind, &[]).await?;
            self.participants.push((kind, Some(process)));
        }
        self.coordinator = Some(self.start_coordinator(&[]).await?);
        Ok(())
    }

    /// The coordinator's own address (the client API).
    pub fn coordinator_addr(&self) -> SocketAddr {
        self.coordinator_addr
    }

    /// The client API's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.coordinator_addr)
    }

    pub fn participant_url(&self, kind: ServiceKind) -> String {
        format!("http://{}", self.participant_addr(kind))
    }

    /// Participant `kind`'s own address.
    pub fn participant_addr(&self, kind: ServiceKind) -> SocketAddr {
        self.participant_addrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
            .expect("every kind has an address")
    }

    fn spec(
        &self,
        name: &str,
        program: &str,
        args: Vec<String>,
        listen: SocketAddr,
        extra_env: &[(&str, &str)],
    ) -> ServiceSpec {
        let mut env = self.config.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        ServiceSpec {
            name: name.into(),
            program: self.config.bin_dir.join(program),
            args,
            env,
            listen,
        }
    }

    /// Starts (or restarts) the coordinator with `extra_env` added (e.g. an armed fail point).
    pub async fn start_coordinator(
        &self,
        extra_env: &[(&str, &str)],
    ) -> Result<ServiceProcess, EnvError> {
        let c = &self.config;
        let mut args = vec![
            "--listen".into(),
            self.coordinator_addr.to_string(),
            "--database-url".into(),
            c.databases.coordinator.clone(),
            "--prepare-timeout-ms".into(),
            c.prepare_timeout.as_millis().to_string(),
            "--prepare-order".into(),
            format!("{:?}", c.prepare_order).to_lowercase(),
            "--default-deadline-ms".into(),
            c.default_deadline.as_millis().to_string(),
            "--pool-size".into(),
            c.pool_size.to_string(),
            "--max-in-flight".into(),
            c.max_in_flight.to_string(),
        ];
        for (kind, addr) in &self.participant_addrs {
            let addr = route(&self.to_participant, *kind).unwrap_or(*addr);
            args.push("--participant".into());
            args.push(format!("{}=http://{addr}", kind.as_str()));
        }
        let spec = self.spec(
            "coordinator",
            "coordinator",
            args,
            self.coordinator_addr,
            extra_env,
        );
        ServiceProcess::start(spec, &c.log_dir, READY).await
    }

    /// Starts (or restarts) one participant with `extra_env` added.
    pub async fn start_participant(
        &self,
        kind: ServiceKind,
        extra_env: &[(&str, &str)],
    ) -> Result<ServiceProcess, EnvError> {
        let c = &self.config;
        let addr = self.participant_addr(kind);
        let args = vec![
            "--service".into(),
            kind.as_str().into(),
            "--listen".into(),
            addr.to_string(),
            "--database-url".into(),
            c.databases.get(kind.store()).to_string(),
            "--coordinator".into(),
            format!(
                "http://{}",
                route(&self.to_coordinator, kind).unwrap_or(self.coordinator_addr)
            ),
            "--ask-after-ms".into(),
            c.ask_after.as_millis().to_string(),
            "--pool-size".into(),
            c.pool_size.to_string(),
        ];
        let spec = self.spec(
            &format!("participant-{}", kind.as_str()),
            "participant",
            args,
            addr,
            extra_env,
        );
        ServiceProcess::start(spec, &c.log_dir, READY).await
    }

    pub fn participant(&mut self, kind: ServiceKind) -> &mut Option<ServiceProcess> {
        &mut self
            .participants
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .expect("every kind runs")
            .1
    }

    pub fn log_dir(&self) -> &Path {
        &self.config.log_dir
    }

    /// Stops everything: the coordinator first, so no new work reaches the participants.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            c.stop();
        }
        for (_, p) in &mut self.participants {
            if let Some(mut p) = p.take() {
                p.stop();
            }
        }
    }
}

fn route(routes: &[(ServiceKind, SocketAddr)], kind: ServiceKind) -> Option<SocketAddr> {
    routes.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.stop();
    }
}
