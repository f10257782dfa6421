//! Scenarios: one TOML file says the load, the data set, the workload, the protocols and the
//! seed, so every protocol of a comparison faces exactly the same thing. A bad file gets an error
//! that names the field (`load.rate`, `protocols[1]`) and why; never a panic.

use crate::load::open::Arrivals;
use crate::load::workload::WorkloadSpec;
use crate::run::faults::random::RandomFaults;
use crate::run::faults::schedule::FaultSpec;
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
    #[serde(default = "default_mode")]
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
    #[serde(default = "default_duration")]
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
    /// Runs per protocol, interleaved (A B C A B C …); the report gives each figure as the
    /// median and range over them.
    #[serde(default = "default_repeat")]
    pub repeat: u32,
    /// Sagas on the lab's own broker: the warm-up goes on in 2 s slices of the same load, for at
    /// most this many seconds more, until the broker's JIT compiler is quiet (`run::warm`). A
    /// fresh broker otherwise spends the first half minute of saga traffic compiling, which a
    /// long-running production broker does not. 0 turns it off.
    #[serde(default = "default_broker_warmup")]
    pub broker_warmup_s: u64,
}

fn default_broker_warmup() -> u64 {
    90
}

fn default_repeat() -> u32 {
    1
}

/// Without a `[load]` section: the `quick` load, 40 orders/s Poisson for 10 s after 3 s of
/// warm-up, which every protocol sustains on two cores. (Inside a given `[load]`, `rate` and
/// `warmup_s` have no default: an open loop must say its rate.)
impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            mode: default_mode(),
            rate: Some(40.0),
            arrivals: default_arrivals(),
            clients: None,
            duration_s: default_duration(),
            warmup_s: 3,
            max_in_flight: default_max_in_flight(),
            connections: default_connections(),
            repeat: default_repeat(),
            broker_warmup_s: default_broker_warmup(),
        }
    }
}

fn default_seed() -> u64 {
    42
}

fn default_protocols() -> Vec<Protocol> {
    vec![
        Protocol::Twopc,
        Protocol::SagaOrchestrated,
        Protocol::SagaChoreographed,
    ]
}

fn default_mode() -> LoadMode {
    LoadMode::Open
}

fn default_duration() -> u64 {
    10
}

fn default_connections() -> usize {
    crate::load::connections::DEFAULT_CONNECTIONS
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
    /// The coordinator's admission limit: transactions in flight at once.
    #[serde(default = "default_twopc_max_in_flight")]
    pub max_in_flight: u32,
}

fn default_twopc_max_in_flight() -> u32 {
    64
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
            max_in_flight: default_twopc_max_in_flight(),
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
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<Protocol>,
    /// The client's deadline per order; an answer within it counts toward availability.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    #[serde(default)]
    pub load: LoadSpec,
    #[serde(default)]
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
    /// The local environment's shape, `single` or `replicated` (`--topology` overrides it).
    #[serde(default)]
    pub topology: common::env::Topology,
}

/// Saga settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaSpec {
    /// Orchestrated: a step without a reply for this long is re-sent, and compensated after 3
    /// sends (5+10+15 s at 5 s). Choreographed: a saga unfinished after that same total wait is
    /// asked to cancel (the payment service decides, at the pivot).
    #[serde(default = "default_step_timeout")]
    pub step_timeout_ms: u64,
    /// The front's admission limit: sagas started and not yet final (2PC: `twopc.max_in_flight`).
    #[serde(default = "default_saga_max_in_flight")]
    pub max_in_flight: u32,
    /// A waiting order is shed once less than this is left before its deadline (2PC reserves
    /// its prepare timeout).
    #[serde(default = "default_admission_reserve")]
    pub admission_reserve_ms: u64,
}

impl SagaSpec {
    pub fn admission(&self) -> saga::config::AdmissionPolicy {
        saga::config::AdmissionPolicy {
            max_in_flight: self.max_in_flight as usize,
            reserve: std::time::Duration::from_millis(self.admission_reserve_ms),
        }
    }
}

fn default_saga_max_in_flight() -> u32 {
    saga::config::AdmissionPolicy::default().max_in_flight as u32
}

fn default_admission_reserve() -> u64 {
    saga::config::AdmissionPolicy::default().reserve.as_millis() as u64
}

fn default_step_timeout() -> u64 {
    5_000
}

impl Default for SagaSpec {
    fn default() -> Self {
        SagaSpec {
            step_timeout_ms: default_step_timeout(),
            max_in_flight: default_saga_max_in_flight(),
            admission_reserve_ms: default_admission_reserve(),
        }
    }
}

fn default_deadline() -> u64 {
    1_000
}

/// `[dataset]`: the data set's shape; the seed is the scenario's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct DataSetFields {
    pub customers: u32,
    pub skus: u32,
    pub balance_cents: (i64, i64),
    pub stock: (i32, i32),
    pub price_cents: (i64, i64),
}

/// 1,000 customers with 500–2,000 currency units each, 100 SKUs with 1,000–5,000 units in
/// stock at 1–50 units each: enough that a short run never runs out.
impl Default for DataSetFields {
    fn default() -> Self {
        DataSetFields {
            customers: 1_000,
            skus: 100,
            balance_cents: (50_000, 200_000),
            stock: (1_000, 5_000),
            price_cents: (100, 5_000),
        }
    }
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
    pub fn surges(&self) -> Vec<crate::load::open::Surge> {
        self.faults
            .iter()
            .filter(|f| f.kind == crate::run::faults::schedule::FaultKind::Surge)
            .map(|f| crate::load::open::Surge {
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

    /// Applies the command line's `[load]` overrides, then validates as for a file; an error
    /// names the flag when the flag's own value is what is wrong.
    pub fn override_load(&mut self, o: &crate::cli::LoadArgs) -> Result<(), (String, String)> {
        let flags = [
            ("load.rate", "--rate", o.rate.is_some()),
            ("load.duration_s", "--duration", o.duration.is_some()),
            ("load.clients", "--clients", o.clients.is_some()),
            ("load.warmup_s", "--warmup", o.warmup.is_some()),
            ("load.repeat", "--repeat", o.repeat.is_some()),
        ];
        if o.rate.is_some() {
            self.load.rate = o.rate;
        }
        if let Some(duration) = o.duration {
            self.load.duration_s = duration;
        }
        if o.clients.is_some() {
            self.load.clients = o.clients;
        }
        if let Some(warmup) = o.warmup {
            self.load.warmup_s = warmup;
        }
        if let Some(repeat) = o.repeat {
            self.load.repeat = repeat;
        }
        self.draw_faults()
            .and_then(|()| self.validate())
            .map_err(|(field, reason)| {
                match flags.iter().find(|(f, _, given)| *given && *f == field) {
                    Some((_, flag, _)) => (flag.to_string(), reason),
                    None => (field, reason),
                }
            })
    }

    fn draw_faults(&mut self) -> Result<(), (String, String)> {
        if let Some(random) = &self.random_faults {
            self.faults =
                crate::run::faults::random::draw(random, self.seed, self.load.duration_s)?;
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

mod validate;

#[cfg(test)]
mod tests;
