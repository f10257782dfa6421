//! Scenarios: one TOML file says the load, the data set, the workload, the protocols and the
//! seed, so every protocol of a comparison faces exactly the same thing. A bad file gets an error
//! that names the field (`load.rate`, `protocols[1]`) and why; never a panic.

use crate::faults::random::RandomFaults;
use crate::faults::schedule::FaultSpec;
use crate::open_loop::Arrivals;
use crate::workload::WorkloadSpec;
use common::datagen::DataSetSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A protocol the lab can run.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Two-phase commit: coordinator + three participants over gRPC.
    Twopc,
    /// Saga driven by an orchestrator over Kafka.
    SagaOrchestrated,
    /// Saga by choreography over Kafka.
    SagaChoreographed,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Twopc => "twopc",
            Protocol::SagaOrchestrated => "saga-orchestrated",
            Protocol::SagaChoreographed => "saga-choreographed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Orders start on a schedule (rate, arrivals); latency from the scheduled start.
    Open,
    /// `clients` clients, each waiting for its answer before the next order.
    Closed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    pub mode: LoadMode,
    /// Open loop: orders per second.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Open loop: how start times are spaced.
    #[serde(default = "default_arrivals")]
    pub arrivals: Arrivals,
    /// Closed loop: concurrent clients.
    #[serde(default)]
    pub clients: Option<usize>,
    /// Measured seconds.
    pub duration_s: u64,
    /// Seconds of load before measuring (its orders and metrics are discarded).
    #[serde(default)]
    pub warmup_s: u64,
    /// Open loop: orders in flight at most; more are dropped and counted.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// HTTP/2 connections to the front service, orders spread round-robin over them.
    #[serde(default = "default_connections")]
    pub connections: usize,
}

fn default_connections() -> usize {
    crate::connections::DEFAULT_CONNECTIONS
}

fn default_arrivals() -> Arrivals {
    Arrivals::Poisson
}

fn default_max_in_flight() -> usize {
    10_000
}

/// Two-phase commit settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwopcSpec {
    #[serde(default = "default_prepare_timeout")]
    pub prepare_timeout_ms: u64,
    #[serde(default = "default_prepare_order")]
    pub prepare_order: twopc::coordinator::PrepareOrder,
}

fn default_prepare_timeout() -> u64 {
    500
}

fn default_prepare_order() -> twopc::coordinator::PrepareOrder {
    twopc::coordinator::PrepareOrder::Parallel
}

impl Default for TwopcSpec {
    fn default() -> Self {
        TwopcSpec {
            prepare_timeout_ms: default_prepare_timeout(),
            prepare_order: default_prepare_order(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seed of the data set, the workload and the arrivals.
    pub seed: u64,
    pub protocols: Vec<Protocol>,
    /// The client's deadline per order; an answer within it counts toward availability.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    pub load: LoadSpec,
    pub dataset: DataSetFields,
    #[serde(default)]
    pub workload: WorkloadFields,
    #[serde(default)]
    pub twopc: TwopcSpec,
    #[serde(default)]
    pub saga: SagaSpec,
    /// `[[faults]]`: what to break, when, for how long; the same for every protocol. With any
    /// fault, every link of a run goes through a fault proxy.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// `[random_faults]`: draw `faults` from the seed instead (see `faults::random`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_faults: Option<RandomFaults>,
}

/// Saga settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaSpec {
    /// Orchestrated: a step without a reply for this long is re-sent (then compensated).
    #[serde(default = "default_step_timeout")]
    pub step_timeout_ms: u64,
}

fn default_step_timeout() -> u64 {
    5_000
}

impl Default for SagaSpec {
    fn default() -> Self {
        SagaSpec {
            step_timeout_ms: default_step_timeout(),
        }
    }
}

fn default_deadline() -> u64 {
    1_000
}

/// `[dataset]`: the data set's shape; the seed is the scenario's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSetFields {
    pub customers: u32,
    pub skus: u32,
    pub balance_cents: (i64, i64),
    pub stock: (i32, i32),
    pub price_cents: (i64, i64),
}

/// `[workload]`: the orders' shape; the seed is the scenario's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFields {
    #[serde(default = "default_range")]
    pub lines: (u32, u32),
    #[serde(default = "default_range")]
    pub qty: (u32, u32),
    #[serde(default)]
    pub sku_skew: f64,
    /// Share of orders built to fail a business rule (half on funds, half on stock).
    #[serde(default)]
    pub failure_share: f64,
}

fn default_range() -> (u32, u32) {
    (1, 3)
}

impl Default for WorkloadFields {
    fn default() -> Self {
        WorkloadFields {
            lines: default_range(),
            qty: default_range(),
            sku_skew: 0.0,
            failure_share: 0.0,
        }
    }
}

/// What is wrong with a scenario, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario {path:?}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error(
        "no scenario named {name:?}: the named ones are {known}; or give a path to a .toml file"
    )]
    Unknown { name: String, known: String },
}

/// A TOML file's contents as `T`; an error names the field (its dotted path) and the reason.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|err| {
        let field = match err.path().to_string() {
            f if f == "." => "(top level)".to_string(),
            f => f,
        };
        (field, err.into_inner().message().trim().to_string())
    })
}

impl Scenario {
    /// The `surge` faults as the open loop applies them.
    pub fn surges(&self) -> Vec<crate::open_loop::Surge> {
        self.faults
            .iter()
            .filter(|f| f.kind == crate::faults::schedule::FaultKind::Surge)
            .map(|f| crate::open_loop::Surge {
                from: std::time::Duration::from_secs(f.at_s),
                to: std::time::Duration::from_secs(f.ends_at_s()),
                factor: f.factor.unwrap_or(1.0),
            })
            .collect()
    }

    /// Reads and checks a scenario: a path, or the name of one in `scenarios/`.
    pub fn load(name_or_path: &str, scenarios_dir: &Path) -> Result<Scenario, ScenarioError> {
        let path = if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            scenarios_dir.join(format!("{name_or_path}.toml"))
        };
        if !path.exists() && !name_or_path.ends_with(".toml") {
            let mut known: Vec<String> = std::fs::read_dir(scenarios_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".toml")
                        .map(String::from)
                })
                .collect();
            known.sort();
            return Err(ScenarioError::Unknown {
                name: name_or_path.into(),
                known: known.join(", "),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        Scenario::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let invalid = |field: String, reason: String| ScenarioError::Invalid {
            path: path.to_path_buf(),
            field,
            reason,
        };
        let mut scenario: Scenario =
            from_toml(text).map_err(|(field, reason)| invalid(field, reason))?;
        if scenario.random_faults.is_some() && !scenario.faults.is_empty() {
            return Err(invalid(
                "random_faults".into(),
                "give either [[faults]] or [random_faults], not both".into(),
            ));
        }
        scenario
            .draw_faults()
            .and_then(|()| scenario.validate())
            .map_err(|(field, reason)| invalid(field, reason))?;
        Ok(scenario)
    }

    /// Sets the seed; a `[random_faults]` schedule is drawn again from it.
    pub fn reseed(&mut self, seed: u64, path: &Path) -> Result<(), ScenarioError> {
        self.seed = seed;
        self.draw_faults()
            .and_then(|()| self.validate())
            .map_err(|(field, reason)| ScenarioError::Invalid {
                path: path.to_path_buf(),
                field,
                reason,
            })
    }

    fn draw_faults(&mut self) -> Result<(), (String, String)> {
        if let Some(random) = &self.random_faults {
            self.faults = crate::faults::random::draw(random, self.seed, self.load.duration_s)?;
        }
        Ok(())
    }

    /// Ranges and consistency that types alone cannot say.
    fn validate(&self) -> Result<(), (String, String)> {
        let load = &self.load;
        match load.mode {
            LoadMode::Open => match load.rate {
                Some(rate) if rate > 0.0 && rate <= 1_000_000.0 => {}
                Some(rate) => {
                    return Err((
                        "load.rate".to_string(),
                        format!("must be in (0, 1000000] orders/s, got {rate}"),
                    ))
                }
                None => {
                    return Err((
                        "load.rate".to_string(),
                        "an open loop needs a rate (orders/s)".into(),
                    ))
                }
            },
            LoadMode::Closed => match load.clients {
                Some(c) if (1..=4096).contains(&c) => {}
                Some(c) => {
                    return Err((
                        "load.clients".to_string(),
                        format!("must be between 1 and 4096, got {c}"),
                    ))
                }
                None => {
                    return Err((
                        "load.clients".to_string(),
                        "a closed loop needs a number of clients".into(),
                    ))
                }
            },
        }
        if load.mode == LoadMode::Open && load.clients.is_some() {
            return Err((
                "load.clients".to_string(),
                "only a closed loop has clients; an open loop has a rate".into(),
            ));
        }
        if load.mode == LoadMode::Closed && load.rate.is_some() {
            return Err((
                "load.rate".to_string(),
                "only an open loop has a rate; a closed loop has clients".into(),
            ));
        }
        if load.duration_s == 0 || load.duration_s > 24 * 3600 {
            return Err((
                "load.duration_s".to_string(),
                format!("must be between 1 and 86400, got {}", load.duration_s),
            ));
        }
        if load.connections == 0 || load.connections > 256 {
            return Err((
                "load.connections".to_string(),
                format!("must be between 1 and 256, got {}", load.connections),
            ));
        }
        if load.max_in_flight == 0 {
            return Err((
                "load.max_in_flight".to_string(),
                "must be at least 1".into(),
            ));
        }
        crate::faults::schedule::validate(&self.faults, load.duration_s)?;
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.kind == crate::faults::schedule::FaultKind::Surge)
        {
            if load.mode != LoadMode::Open {
                return Err((
                    format!("faults[{i}].kind"),
                    "a surge multiplies an open loop's rate; a closed loop has none".into(),
                ));
            }
        }
        if self.protocols.is_empty() {
            return Err((
                "protocols".to_string(),
                "name at least one of twopc, saga-orchestrated, saga-choreographed".into(),
            ));
        }
        if self.deadline_ms == 0 {
            return Err(("deadline_ms".to_string(), "must be positive".into()));
        }
        self.data_set_spec()
            .validate()
            .map_err(|e| (format!("dataset.{}", e.field), e.reason))?;
        let w = &self.workload;
        if w.lines.0 == 0 || w.lines.0 > w.lines.1 {
            return Err((
                "workload.lines".to_string(),
                format!("needs 1 <= min <= max, got {:?}", w.lines),
            ));
        }
        if w.lines.1 > self.dataset.skus {
            return Err((
                "workload.lines".to_string(),
                format!(
                    "an order cannot have more lines ({}) than there are skus ({})",
                    w.lines.1, self.dataset.skus
                ),
            ));
        }
        if w.qty.0 == 0 || w.qty.0 > w.qty.1 {
            return Err((
                "workload.qty".to_string(),
                format!("needs 1 <= min <= max, got {:?}", w.qty),
            ));
        }
        if !(0.0..=5.0).contains(&w.sku_skew) {
            return Err((
                "workload.sku_skew".to_string(),
                format!("must be between 0 (uniform) and 5, got {}", w.sku_skew),
            ));
        }
        if !(0.0..=1.0).contains(&w.failure_share) {
            return Err((
                "workload.failure_share".to_string(),
                format!("must be between 0 and 1, got {}", w.failure_share),
            ));
        }
        if self.saga.step_timeout_ms == 0 {
            return Err((
                "saga.step_timeout_ms".to_string(),
                "must be positive".into(),
            ));
        }
        if self.twopc.prepare_timeout_ms == 0 {
            return Err((
                "twopc.prepare_timeout_ms".to_string(),
                "must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn data_set_spec(&self) -> DataSetSpec {
        let d = &self.dataset;
        DataSetSpec {
            seed: self.seed,
            customers: d.customers,
            skus: d.skus,
            balance_cents: d.balance_cents,
            stock: d.stock,
            price_cents: d.price_cents,
        }
    }

    pub fn workload_spec(&self) -> WorkloadSpec {
        let w = &self.workload;
        WorkloadSpec {
            seed: self.seed,
            lines: w.lines,
            qty: w.qty,
            sku_skew: w.sku_skew,
            failure_share: w.failure_share,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
seed = 1
protocols = ["twopc", "saga-orchestrated"]
[load]
mode = "open"
rate = 100.0
duration_s = 10
[dataset]
customers = 100
skus = 10
balance_cents = [1000, 2000]
stock = [10, 20]
price_cents = [100, 200]
"#;

    fn error_of(text: &str) -> String {
        Scenario::parse(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_good_scenario_parses_with_defaults() {
        let s = Scenario::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(
            s.protocols,
            vec![Protocol::Twopc, Protocol::SagaOrchestrated]
        );
        assert_eq!(s.load.arrivals, Arrivals::Poisson);
        assert_eq!(s.deadline_ms, 1_000);
        assert_eq!(s.workload.lines, (1, 3));
    }

    #[test]
    fn errors_name_the_field_and_why() {
        let e = error_of(&GOOD.replace("rate = 100.0", "rat = 100.0"));
        assert!(
            e.contains("load") && e.contains("unknown field `rat`"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("rate = 100.0", "rate = \"fast\""));
        assert!(e.contains("load.rate") && e.contains("invalid type"), "{e}");
        let e = error_of(&GOOD.replace("rate = 100.0", "rate = -5.0"));
        assert!(e.contains("load.rate: must be in (0, 1000000]"), "{e}");
        let e = error_of(&GOOD.replace("\"saga-orchestrated\"", "\"paxos\""));
        assert!(e.contains("protocols[1]") && e.contains("paxos"), "{e}");
        let e = error_of(&GOOD.replace("rate = 100.0", "rate = 100.0\nclients = 4"));
        assert!(
            e.contains("load.clients: only a closed loop has clients"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("stock = [10, 20]", "stock = [20, 10]"));
        assert!(e.contains("dataset.stock"), "{e}");
        let e = error_of(
            &GOOD
                .replace("skus = 10", "skus = 2")
                .replace("[dataset]", "[workload]\nlines = [1, 3]\n[dataset]"),
        );
        assert!(e.contains("workload.lines"), "{e}");
        let e = error_of(&GOOD.replace("duration_s = 10", ""));
        assert!(e.contains("duration_s"), "{e}");
    }

    #[test]
    fn every_shipped_scenario_is_valid_and_random_draws_from_its_seed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = Scenario::load(path.to_str().unwrap(), &dir)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(s.name);
        }
        for kind in [
            "partition",
            "delay",
            "reset",
            "crash",
            "pause",
            "isolate",
            "surge",
        ] {
            let s = Scenario::load(kind, &dir).unwrap();
            assert_eq!(s.faults.len(), 1, "{kind}");
            assert_eq!(s.faults[0].kind.as_str(), kind);
        }
        let mut random = Scenario::load("random", &dir).unwrap();
        let first = random.faults.clone();
        assert_eq!(first.len(), 2);
        random.reseed(random.seed + 1, Path::new("random")).unwrap();
        assert_ne!(random.faults, first, "another seed, another schedule");
        assert!(names.contains(&"faults".to_string()), "{names:?}");
    }

    #[test]
    fn random_faults_and_a_fixed_schedule_do_not_mix() {
        let text = with_faults(
            "[[faults]]\nkind = \"partition\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 3\n\
             [random_faults]\ncount = 1\nduration_s = [1, 2]\n",
        );
        let err = Scenario::parse(&text, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("random_faults"), "{err}");
    }

    fn with_faults(faults: &str) -> String {
        format!("{GOOD}{faults}")
    }

    #[test]
    fn a_fault_schedule_parses_and_its_errors_name_the_entry_and_field() {
        let good = with_faults(
            "[[faults]]\nkind = \"partition\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 3\n\
             [[faults]]\nkind = \"delay\"\ntarget = \"inventory\"\nat_s = 2\nduration_s = 3\nlatency_ms = 20\n",
        );
        let s = Scenario::parse(&good, Path::new("t.toml")).unwrap();
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.faults[1].label(), "delay inventory +20 ms 2–5 s");

        let cases = [
            (
                "[[faults]]\nkind = \"delay\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 2\n",
                "faults[0].latency_ms: a delay needs latency_ms",
            ),
            (
                "[[faults]]\nkind = \"crash\"\ntarget = \"payment\"\nat_s = 8\nduration_s = 5\n",
                "faults[0].duration_s: the fault ends at 13 s, after the measured load",
            ),
            (
                "[[faults]]\nkind = \"crash\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\n",
                "faults[0].target: the client is the load generator itself",
            ),
            (
                "[[faults]]\nkind = \"crash\"\ntarget = \"paymnet\"\nat_s = 1\nduration_s = 2\n",
                "faults[0].target: unknown variant `paymnet`",
            ),
            (
                "[[faults]]\nkind = \"reset\"\ntarget = \"order\"\nat_s = 1\nduration_s = 2\nlatency_ms = 5\n",
                "faults[0].latency_ms: only a delay has a latency",
            ),
            (
                "[[faults]]\nkind = \"reset\"\ntarget = \"order\"\nat_s = 1\nduration_s = 4\n\
                 [[faults]]\nkind = \"crash\"\ntarget = \"order\"\nat_s = 3\nduration_s = 2\n",
                "faults[1].at_s: overlaps faults[0] on the same target (order)",
            ),
            (
                "[[faults]]\nkind = \"partition\"\ntarget = \"broker\"\nat_s = 1\nduration_s = 4\n\
                 [[faults]]\nkind = \"delay\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 1\nlatency_ms = 5\n",
                "faults[1].at_s: overlaps faults[0] (partition broker 1–5 s), which acts on links payment shares",
            ),
            (
                "[[faults]]\nkind = \"surge\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\n",
                "faults[0].factor: a surge needs factor",
            ),
            (
                "[[faults]]\nkind = \"surge\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\nfactor = 0.5\n",
                "faults[0].factor: must be in (1, 100], got 0.5",
            ),
            (
                "[[faults]]\nkind = \"surge\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 2\nfactor = 2.0\n",
                "faults[0].target: a surge acts on the offered load",
            ),
            (
                "[[faults]]\nkind = \"pause\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 2\nfactor = 2.0\n",
                "faults[0].factor: only a surge has a factor",
            ),
            (
                "[[faults]]\nkind = \"pause\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\n",
                "faults[0].target: the client is the load generator itself; pause a service",
            ),
            (
                "[[faults]]\nkind = \"isolate\"\ntarget = \"order\"\nat_s = 1\nduration_s = 4\n\
                 [[faults]]\nkind = \"delay\"\ntarget = \"client\"\nat_s = 2\nduration_s = 1\nlatency_ms = 5\n",
                "faults[1].at_s: overlaps faults[0] (isolate order 1–5 s), which acts on links client shares",
            ),
        ];
        for (faults, expected) in cases {
            let e = error_of(&with_faults(faults));
            assert!(e.contains(expected), "expected {expected:?} in: {e}");
        }
    }
}
