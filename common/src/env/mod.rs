//! The local environment (DESIGN §4): a private PostgreSQL cluster and a single-node Apache Kafka,
//! started by the lab in a run directory, with each component's log kept there. Start, readiness
//! and stop are one API for tests, the load generator and the benches; dropping a [`LabEnv`]
//! stops everything, and a lab that dies takes its children with it.

pub mod kafka;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod services;
pub mod testing;

use crate::storage::DatabaseUrls;
use kafka::{KafkaBroker, KafkaConfig};
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

#[derive(Clone, Debug)]
pub struct LabEnvConfig {
    /// Where data, configs and logs live. Reusing it makes a warm start.
    pub run_dir: PathBuf,
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
            postgres: PostgresConfig::default(),
            kafka: KafkaConfig::default(),
            fresh_kafka: false,
        }
    }
}

/// A running local environment. Drop stops Kafka first, then PostgreSQL.
#[derive(Debug)]
pub struct LabEnv {
    // Field order is drop order: the broker goes before the database.
    pub kafka: KafkaBroker,
    pub postgres: PostgresCluster,
    run_dir: PathBuf,
    /// How long `start` took (for reports: cold versus warm start).
    pub start_time: Duration,
}

impl LabEnv {
    /// Starts PostgreSQL and Kafka and waits until both answer. If anything fails, whatever was
    /// already started is stopped before the error returns: no half-started environment remains.
    pub async fn start(config: &LabEnvConfig) -> Result<LabEnv, EnvError> {
        let started = Instant::now();
        PostgresCluster::preflight(&config.postgres)?;
        KafkaBroker::preflight(&config.kafka)?;
        let logs = config.run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| EnvError::Io {
            what: "creating",
            path: logs.clone(),
            source,
        })?;
        let postgres = PostgresCluster::start(&config.postgres, &config.run_dir).await?;
        // On error `postgres` is dropped here, which stops it.
        let kafka = if config.fresh_kafka {
            KafkaBroker::start_fresh(&config.kafka, &config.run_dir).await?
        } else {
            KafkaBroker::start(&config.kafka, &config.run_dir).await?
        };
        let start_time = started.elapsed();
        tracing::info!(run_dir = %config.run_dir.display(), ?start_time, "environment ready");
        Ok(LabEnv {
            kafka,
            postgres,
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
