//! A single-node Apache Kafka broker in KRaft mode, run from the Apache jars (resolved from Maven
//! Central by `kafka/pom.xml` into the lab's cache) with the machine's Java. Besides the lab's own
//! client listener it can open one named listener per client process, each advertised at an
//! address of the lab's choosing (a fault proxy), so one process can be cut from the broker alone.

use super::process::{log_tail, run_to_completion, stop_leftover, ManagedChild, StopPolicy};
use super::{ports, EnvError};
use crate::kafka_clients::GROUP_SESSION_TIMEOUT_MS;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The pinned Kafka release, read from `kafka/pom.xml` at build time (one source of truth).
pub const KAFKA_VERSION: &str = env!("TXLAB_KAFKA_VERSION");

/// The broker's logging configuration (log4j2), written into the run directory.
const LOG4J2_CONFIG: &str = include_str!("../../../kafka/log4j2.properties");

/// A client listener besides the lab's own: a name and where clients are told to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientListener {
    /// Listener name: upper-case letters, digits and `_` (e.g. `PAYMENT`).
    pub name: String,
    /// Where the broker binds it; `None` for a free port.
    pub port: Option<u16>,
    /// What metadata responses advertise for it (e.g. a fault proxy); `None`: the bound address.
    pub advertised: Option<SocketAddr>,
}

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Port of the lab's own client listener; `None` for a free one.
    pub port: Option<u16>,
    /// The `java` to run (17 or newer).
    pub java: PathBuf,
    /// Directory holding the broker's jars (`bash scripts/setup.sh` fills it).
    pub libs_dir: PathBuf,
    /// One listener per client process that faults must be able to isolate.
    pub client_listeners: Vec<ClientListener>,
    /// Default partitions of a new topic.
    pub partitions: u32,
    /// JVM heap (`-Xmx`), e.g. "1g".
    pub heap: String,
    pub ready_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            port: None,
            java: default_java(),
            libs_dir: default_libs_dir(),
            client_listeners: Vec::new(),
            partitions: 8,
            heap: "1g".into(),
            ready_timeout: Duration::from_secs(90),
        }
    }
}

/// `$JAVA_HOME/bin/java` when set, else `java` from PATH.
pub fn default_java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .unwrap_or_else(|| "java".into())
}

/// `$TXLAB_CACHE` (default `~/.cache/txlab`): where setup puts what it downloads.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TXLAB_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    home.join(".cache/txlab")
}

pub fn default_libs_dir() -> PathBuf {
    cache_dir()
        .join(format!("kafka-{KAFKA_VERSION}"))
        .join("libs")
}

/// A running broker; stopped on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    port: u16,
    listeners: Vec<(String, u16)>,
    server: ManagedChild,
}

impl KafkaBroker {
    /// Formats the storage on first use (warm starts reuse it), writes the config, starts the
    /// broker and waits until a client sees it in the cluster metadata.
    pub async fn start(config: &KafkaConfig, run_dir: &Path) -> Result<KafkaBroker, EnvError> {
        Self::start_with(config, run_dir, false).await
    }

    /// Like `start`, on empty storage: the topics, offsets and groups of earlier runs in this
    /// run directory are deleted first.
    pub async fn start_fresh(
        config: &KafkaConfig,
        run_dir: &Path,
    ) -> Result<KafkaBroker, EnvError> {
        Self::start_with(config, run_dir, true).await
    }

    async fn start_with(
        config: &KafkaConfig,
        run_dir: &Path,
        fresh: bool,
    ) -> Result<KafkaBroker, EnvError> {
        Self::preflight(config)?;
        let dir = run_dir.join("kafka");
        let logs = run_dir.join("logs");
        let port = ports::choose_port(config.port, "Kafka")?;
        let controller_port = ports::choose_port(None, "Kafka controller")?;
        let mut listeners = Vec::new();
        for listener in &config.client_listeners {
            validate_listener_name(&listener.name)?;
            listeners.push((
                listener.name.clone(),
                ports::choose_port(listener.port, "Kafka client listener")?,
            ));
        }
        let properties = server_properties(config, &dir, port, controller_port, &listeners);
        write(&dir.join("server.properties"), &properties)?;
        write(&dir.join("log4j2.properties"), LOG4J2_CONFIG)?;

        // A broker an earlier lab left running here goes first: it owns the storage.
        let pid_file = dir.join("broker.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            stop_leftover(pid, &dir.display().to_string(), libc::SIGTERM);
        }
        let data = dir.join("data");
        if fresh && data.exists() {
            std::fs::remove_dir_all(&data).map_err(|source| EnvError::Io {
                what: "emptying the broker's storage",
                path: data.clone(),
                source,
            })?;
        }
        if !data.join("meta.properties").exists() {
            format_storage(config, &dir, &logs)?;
        }
        let mut command = java_command(config, &dir, &logs);
        command
            .arg("kafka.Kafka")
            .arg(dir.join("server.properties"));
        let stop = StopPolicy {
            signal: libc::SIGTERM,
            grace: Duration::from_secs(20),
        };
        let server = ManagedChild::spawn("kafka", command, &logs.join("kafka.log"), stop).map_err(
            |source| EnvError::Spawn {
                what: "kafka (java)",
                source,
            },
        )?;
        write(&pid_file, &server.pid().to_string())?;
        let mut broker = KafkaBroker {
            port,
            listeners,
            server,
        };
        broker.wait_ready(config.ready_timeout).await?;
        Ok(broker)
    }

    /// What must be true before anything starts: Java 17+ runs and the jars are in place.
    pub fn preflight(config: &KafkaConfig) -> Result<(), EnvError> {
        check_java(&config.java)?;
        if !config
            .libs_dir
            .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"))
            .exists()
        {
            return Err(EnvError::KafkaJarsMissing {
                dir: config.libs_dir.clone(),
            });
        }
        Ok(())
    }

    /// `host:port` of the lab's own client listener.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The bound port of a named client listener.
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// SIGKILL, for broker-crash faults.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// SIGSTOP, for broker-pause faults: connections stay open, nothing is answered.
    pub fn pause(&mut self) {
        self.server.pause();
    }

    /// SIGCONT after [`KafkaBroker::pause`].
    pub fn resume(&mut self) {
        self.server.resume();
    }

    /// Controlled shutdown (SIGTERM), waiting for it.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), EnvError> {
        let started = Instant::now();
        let bootstrap = self.bootstrap_servers();
        loop {
            if let Some(status) = self.server.exit_status() {
                return Err(EnvError::Exited {
                    what: "kafka",
                    status: status.to_string(),
                    log: self.server.log_path().to_path_buf(),
                    tail: self.server.log_tail(20),
                });
            }
            let probe = bootstrap.clone();
            let ready = tokio::task::spawn_blocking(move || broker_in_metadata(&probe))
                .await
                .unwrap_or(false);
            if ready {
                tracing::info!(port = self.port, elapsed = ?started.elapsed(), "Kafka ready");
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(EnvError::NotReady {
                    what: "kafka",
                    after: timeout,
                    log: self.server.log_path().to_path_buf(),
                    tail: self.server.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether a metadata request through `bootstrap` lists a broker (blocking, ≤ 1 s).
fn broker_in_metadata(bootstrap: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "1000")
        .set("log_level", "0")
        .create();
    match consumer {
        Ok(consumer) => consumer
            .fetch_metadata(None, Duration::from_secs(1))
            .map(|m| !m.brokers().is_empty())
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn server_properties(
    config: &KafkaConfig,
    dir: &Path,
    port: u16,
    controller_port: u16,
    extra: &[(String, u16)],
) -> String {
    let mut listeners = vec![
        format!("LAB://127.0.0.1:{port}"),
        format!("CONTROLLER://127.0.0.1:{controller_port}"),
    ];
    let mut advertised = vec![format!("LAB://127.0.0.1:{port}")];
    let mut protocols = vec![
        "LAB:PLAINTEXT".to_string(),
        "CONTROLLER:PLAINTEXT".to_string(),
    ];
    for ((name, bound), spec) in extra.iter().zip(&config.client_listeners) {
        listeners.push(format!("{name}://127.0.0.1:{bound}"));
        let shown = spec
            .advertised
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!("127.0.0.1:{bound}"));
        advertised.push(format!("{name}://{shown}"));
        protocols.push(format!("{name}:PLAINTEXT"));
    }
    let mut text = String::from(
        "# Written by the lab for one single-node KRaft broker; see common/src/env/kafka.rs.\n",
    );
    let settings = [
        ("process.roles", "broker,controller".to_string()),
        ("node.id", "1".into()),
        (
            "controller.quorum.voters",
            format!("1@127.0.0.1:{controller_port}"),
        ),
        ("controller.listener.names", "CONTROLLER".into()),
        ("inter.broker.listener.name", "LAB".into()),
        ("listeners", listeners.join(",")),
        ("advertised.listeners", advertised.join(",")),
        ("listener.security.protocol.map", protocols.join(",")),
        ("log.dirs", dir.join("data").display().to_string()),
        ("num.partitions", config.partitions.to_string()),
        ("auto.create.topics.enable", "false".into()),
        ("offsets.topic.replication.factor", "1".into()),
        // Few internal partitions: a broker with 50+50 of them takes ~1.5 s longer to start.
        ("offsets.topic.num.partitions", "4".into()),
        ("transaction.state.log.replication.factor", "1".into()),
        ("transaction.state.log.min.isr", "1".into()),
        ("transaction.state.log.num.partitions", "4".into()),
        (
            "share.coordinator.state.topic.replication.factor",
            "1".into(),
        ),
        ("share.coordinator.state.topic.min.isr", "1".into()),
        ("group.initial.rebalance.delay.ms", "0".into()),
        // After a SIGKILL the controller keeps the dead broker's registration until its
        // session times out (default 9 s) and refuses the restarted one until then; a
        // broker-crash fault would measure that timer, not recovery. 2 s, heartbeats 500 ms.
        ("broker.session.timeout.ms", "2000".into()),
        ("broker.heartbeat.interval.ms", "500".into()),
        ("log.flush.interval.messages", "9223372036854775807".into()),
        // Consumer groups (KIP-848 protocol): the broker sets the session.
        (
            "group.consumer.session.timeout.ms",
            GROUP_SESSION_TIMEOUT_MS.to_string(),
        ),
        (
            "group.consumer.min.session.timeout.ms",
            GROUP_SESSION_TIMEOUT_MS.to_string(),
        ),
        ("group.consumer.heartbeat.interval.ms", "1500".into()),
        ("group.consumer.min.heartbeat.interval.ms", "1000".into()),
    ];
    for (key, value) in settings {
        let _ = writeln!(text, "{key}={value}");
    }
    text
}

/// `java` with the broker's classpath; log4j writes its INFO log to `<log_dir>/server.log`.
fn java_command(config: &KafkaConfig, dir: &Path, log_dir: &Path) -> Command {
    let mut command = Command::new(&config.java);
    command
        .arg(format!("-Xmx{}", config.heap))
        .arg("-Xms256m")
        .args([
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
        ])
        .args([
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .arg(format!("-Dkafka.logs.dir={}", log_dir.display()))
        .arg("-cp")
        .arg(format!("{}/*", config.libs_dir.display()));
    command
}

fn format_storage(config: &KafkaConfig, dir: &Path, logs: &Path) -> Result<(), EnvError> {
    let log = &logs.join("kafka-format.log");
    // Its own log directory, so its config dump does not land in the broker's server.log.
    let mut command = java_command(config, dir, &logs.join("kafka-format"));
    command
        .arg("kafka.tools.StorageTool")
        .arg("format")
        .arg("--cluster-id")
        .arg(new_cluster_id())
        .arg("--config")
        .arg(dir.join("server.properties"))
        .arg("--ignore-formatted");
    let status = run_to_completion(command, log).map_err(|source| EnvError::Spawn {
        what: "kafka storage format",
        source,
    })?;
    if !status.success() {
        return Err(EnvError::Exited {
            what: "kafka storage format",
            status: status.to_string(),
            log: log.into(),
            tail: log_tail(log, 15),
        });
    }
    Ok(())
}

/// A KRaft cluster id: 16 random bytes in URL-safe base64 without padding. Drawn again while it
/// starts with `-`, as Kafka's own `Uuid.randomUuid()` does: the storage tool's argument parser
/// would read such an id as an option (1 draw in 64 failed `kafka storage format` in CI).
fn new_cluster_id() -> String {
    use base64::Engine;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Java must run and be 17 or newer (Kafka 4's brokers need 17).
fn check_java(java: &Path) -> Result<(), EnvError> {
    let output = Command::new(java)
        .arg("-version")
        .output()
        .map_err(|_| EnvError::JavaMissing { java: java.into() })?;
    let text = String::from_utf8_lossy(&output.stderr);
    let major = text
        .split('"')
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 17 => Ok(()),
        _ => Err(EnvError::JavaTooOld {
            java: java.into(),
            version: text.lines().next().unwrap_or("").to_string(),
        }),
    }
}

fn validate_listener_name(name: &str) -> Result<(), EnvError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name != "LAB"
        && name != "CONTROLLER";
    if ok {
        Ok(())
    } else {
        Err(EnvError::BadListenerName { name: name.into() })
    }
}

fn write(path: &Path, text: &str) -> Result<(), EnvError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| EnvError::Io {
            what: "creating",
            path: parent.into(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| EnvError::Io {
        what: "writing",
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::new_cluster_id;

    #[test]
    fn cluster_ids_never_look_like_an_option() {
        // 1 in 64 raw draws starts with '-'; 10,000 draws would hit it about 156 times.
        for _ in 0..10_000 {
            let id = new_cluster_id();
            assert!(!id.starts_with('-'), "{id}");
            assert_eq!(id.len(), 22, "{id}");
        }
    }
}
