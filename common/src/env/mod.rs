//! The local environment (DESIGN §4): private PostgreSQL and Apache Kafka in one of two
//! topologies — `single` (one cluster, one broker) or `replicated` (a cluster per owner, three
//! brokers) — started by the lab in a run directory, with each component's log kept there. Start, readiness
//! and stop are one API for tests, the load generator and the benches; dropping a [`LabEnv`]
//! stops everything, and a lab that dies takes its children with it.

pub mod clusters;
pub mod kafka;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod services;
pub mod testing;
pub mod toxiproxy;

use crate::storage::DatabaseUrls;
use clusters::PostgresClusters;
use kafka::{KafkaCluster, KafkaConfig};
use postgres::{PostgresCluster, PostgresConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the environment could not start. Each message says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("Java was not found at {java:?}: Kafka needs Java 17 or newer; install it (`apt-get install -y openjdk-17-jre-headless`) or set JAVA_HOME")]
    JavaMissing { java: PathBuf },
    #[error("{java:?} is not Java 17 or newer ({version}): Kafka 4 needs 17+; install openjdk-17-jre-headless or set JAVA_HOME")]
    JavaTooOld { java: PathBuf, version: String },
    #[error("the Kafka jars are not in {dir:?}: run `bash scripts/setup.sh` (it resolves them from Maven Central)")]
    KafkaJarsMissing { dir: PathBuf },
    #[error("PostgreSQL server binaries (initdb, postgres) were not found in {searched}: run `bash scripts/setup.sh` or `apt-get install -y postgresql`")]
    PostgresMissing { searched: String },
    #[error("running as root, but there is no `postgres` OS user to run PostgreSQL as: install the postgresql package (`bash scripts/setup.sh`)")]
    NoUnprivilegedUser,
    #[error("{what} port {port} on 127.0.0.1 is already in use ({source}); choose another port or stop what is listening there")]
    PortTaken {
        what: &'static str,
        port: u16,
        source: std::io::Error,
    },
    #[error("Kafka listener name {name:?} is not valid: use upper-case letters, digits and _, and not LAB or CONTROLLER")]
    BadListenerName { name: String },
    #[error(
        "a Kafka cluster of {brokers} nodes is not supported: use 1 (single) or 3 (replicated)"
    )]
    BadClusterSize { brokers: u32 },
    #[error("{what} {path:?} failed: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start {what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} exited ({status}); its log {log:?} ends with:\n{tail}")]
    Exited {
        what: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what} was not ready after {after:?}; its log {log:?} ends with:\n{tail}")]
    NotReady {
        what: &'static str,
        after: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("{what} failed: {source}")]
    Sql {
        what: &'static str,
        source: sqlx::Error,
    },
}

/// The shape of the local environment (DESIGN §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// One broker, one PostgreSQL cluster holding every owner's databases.
    #[default]
    Single,
    /// Three brokers (replication factor 3, `min.insync.replicas=2`, producers `acks=all`) and
    /// one PostgreSQL cluster per owner.
    Replicated,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Replicated => "replicated",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LabEnvConfig {
    /// Where data, configs and logs live. Reusing it makes a warm start.
    pub run_dir: PathBuf,
    pub topology: Topology,
    pub postgres: PostgresConfig,
    pub kafka: KafkaConfig,
    /// Start Kafka on empty storage (a warm start otherwise keeps every earlier topic): runs
    /// that measure the broker start from the same state. A restart after a crash never wipes.
    pub fresh_kafka: bool,
}

impl LabEnvConfig {
    pub fn new(run_dir: impl Into<PathBuf>) -> LabEnvConfig {
        LabEnvConfig {
            run_dir: run_dir.into(),
            topology: Topology::Single,
            postgres: PostgresConfig::default(),
            kafka: KafkaConfig::default(),
            fresh_kafka: false,
        }
    }

    /// The same, in `topology`: the replicated one gets three brokers.
    pub fn with_topology(run_dir: impl Into<PathBuf>, topology: Topology) -> LabEnvConfig {
        let mut config = LabEnvConfig::new(run_dir);
        config.topology = topology;
        if topology == Topology::Replicated {
            config.kafka = KafkaConfig::replicated();
        }
        config
    }
}

/// A running local environment. Drop stops Kafka first, then PostgreSQL.
#[derive(Debug)]
pub struct LabEnv {
    // Field order is drop order: the broker goes before the database.
    pub kafka: KafkaCluster,
    pub postgres: PostgresClusters,
    pub topology: Topology,
    run_dir: PathBuf,
    /// How long `start` took (for reports: cold versus warm start).
    pub start_time: Duration,
}

impl LabEnv {
    /// Starts PostgreSQL and Kafka and waits until every part answers. If anything fails, whatever was
    /// already started is stopped before the error returns: no half-started environment remains.
    pub async fn start(config: &LabEnvConfig) -> Result<LabEnv, EnvError> {
        let started = Instant::now();
        PostgresCluster::preflight(&config.postgres)?;
        KafkaCluster::preflight(&config.kafka)?;
        let logs = config.run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| EnvError::Io {
            what: "creating",
            path: logs.clone(),
            source,
        })?;
        let per_owner = config.topology == Topology::Replicated;
        let postgres =
            PostgresClusters::start(&config.postgres, &config.run_dir, per_owner).await?;
        // On error `postgres` is dropped here, which stops it.
        let kafka = KafkaCluster::start(&config.kafka, &config.run_dir, config.fresh_kafka).await?;
        let start_time = started.elapsed();
        tracing::info!(run_dir = %config.run_dir.display(), topology = config.topology.as_str(), ?start_time, "environment ready");
        Ok(LabEnv {
            kafka,
            postgres,
            topology: config.topology,
            run_dir: config.run_dir.clone(),
            start_time,
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The lab's default database set.
    pub fn database_urls(&self) -> DatabaseUrls {
        self.postgres.urls("")
    }

    pub fn bootstrap_servers(&self) -> String {
        self.kafka.bootstrap_servers()
    }

    /// Stops Kafka, then PostgreSQL, waiting for both.
    pub fn stop(mut self) {
        self.kafka.stop();
        self.postgres.stop();
    }
}
