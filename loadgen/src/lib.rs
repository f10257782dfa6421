//! The lab's load generator: provisions the local environment, seeds a data set, drives a
//! protocol through `OrderApi`, collects the services' metrics and runs the invariant checker.
//! In the order a run flows: [`scenario`] says what to do, [`load`] puts the load on (open or
//! closed loop, one recorder), [`run`] owns the environment, the protocols' processes, faults
//! and the checker, and [`report`] writes what was measured. `main.rs` parses and calls.

pub mod cli;
pub mod load;
pub mod report;
pub mod run;
pub mod scenario;

/// Why a loadgen command failed. Each variant carries the underlying error's own message.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Env(#[from] common::env::EnvError),
    #[error(transparent)]
    Storage(#[from] common::storage::StorageError),
    #[error(transparent)]
    DataSet(#[from] common::datagen::InvalidDataSetSpec),
    #[error("cannot reach a lab service: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("a service's metrics: {0}")]
    Metrics(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Probe(#[from] crate::run::probe::ProbeError),
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("{flag}: {reason}")]
    BadFlag { flag: &'static str, reason: String },
    #[error(transparent)]
    Deployment(#[from] crate::run::deployed::DeploymentError),
    #[error("writing the report: {0}")]
    Report(String),
    #[error("{what}: {source}")]
    Kafka {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
}
