//! Apache Kafka in KRaft mode, run from the Apache jars (resolved from Maven Central by
//! `kafka/pom.xml` into the lab's cache) with the machine's Java: one broker, or (the replicated
//! topology) three nodes that are each broker and controller, with replication factor 3 and
//! `min.insync.replicas=2`. Besides the lab's own client listener each node can open one named
//! listener per client process, each advertised at an address of the lab's choosing (a fault
//! proxy), so one process can be cut from one broker alone.

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
    /// The node (1-based) that opens it. A name must be opened on every node: clients that
    /// bootstrap through it see only the brokers that have it.
    pub node: u32,
    /// Listener name: upper-case letters, digits and `_` (e.g. `PAYMENT`).
    pub name: String,
    /// Where the broker binds it; `None` for a free port.
    pub port: Option<u16>,
    /// What metadata responses advertise for it (e.g. a fault proxy); `None`: the bound address.
    pub advertised: Option<SocketAddr>,
}

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Port of node 1's own client listener; `None` for a free one (other nodes take free ones).
    pub port: Option<u16>,
    /// How many nodes: 1 (single) or 3 (replicated; each node is broker and controller).
    pub brokers: u32,
    /// The `java` to run (17 or newer).
    pub java: PathBuf,
    /// Directory holding the broker's jars (`bash scripts/setup.sh` fills it).
    pub libs_dir: PathBuf,
    /// One listener per client process that faults must be able to isolate.
    pub client_listeners: Vec<ClientListener>,
    /// Default partitions of a new topic.
    pub partitions: u32,
    /// JVM heap (`-Xmx`) of each node, e.g. "1g".
    pub heap: String,
    pub ready_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            port: None,
            brokers: 1,
            java: default_java(),
            libs_dir: default_libs_dir(),
            client_listeners: Vec::new(),
            partitions: 8,
            heap: "1g".into(),
            ready_timeout: Duration::from_secs(90),
        }
    }
}

impl KafkaConfig {
    /// Three nodes with 512 MiB of heap each: on two cores and a modest rate the brokers need
    /// little memory, and three 1 GiB heaps would only delay their garbage collections.
    pub fn replicated() -> KafkaConfig {
        KafkaConfig {
            brokers: 3,
            heap: "512m".into(),
            ..KafkaConfig::default()
        }
    }

    /// Copies of every record: one per node, at most 3.
    pub fn replication_factor(&self) -> u32 {
        self.brokers.min(3)
    }

    /// Replicas that must have a record before `acks=all` is answered.
    pub fn min_insync_replicas(&self) -> u32 {
        if self.brokers >= 3 {
            2
        } else {
            1
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

/// The ports one node binds, fixed when the cluster is first started so that a node that
/// crashed comes back where its clients and peers look for it.
#[derive(Clone, Debug)]
struct NodePorts {
    /// The lab's own client listener (also the inter-broker one).
    lab: u16,
    controller: u16,
    /// Each named client listener of this node and its bound port.
    listeners: Vec<(String, u16)>,
}

/// The nodes of a cluster: one, or three that each are broker and controller. Stopped on drop.
#[derive(Debug)]
pub struct KafkaCluster {
    brokers: Vec<KafkaBroker>,
}

impl KafkaCluster {
    /// Formats each node's storage on first use (warm starts reuse it), writes the configs,
    /// starts every node and waits until each sees itself in the cluster metadata. With
    /// `fresh`, the topics, offsets and groups of earlier runs in `run_dir` are deleted first.
    /// If a node fails, the nodes already started are stopped before the error returns.
    pub async fn start(
        config: &KafkaConfig,
        run_dir: &Path,
        fresh: bool,
    ) -> Result<KafkaCluster, EnvError> {
        Self::preflight(config)?;
        if !(1..=9).contains(&config.brokers) {
            return Err(EnvError::BadClusterSize {
                brokers: config.brokers,
            });
        }
        for listener in &config.client_listeners {
            validate_listener_name(&listener.name)?;
        }
        let mut nodes = Vec::new();
        for node in 1..=config.brokers {
            let requested = if node == 1 { config.port } else { None };
            let mut listeners = Vec::new();
            for listener in config.client_listeners.iter().filter(|l| l.node == node) {
                listeners.push((
                    listener.name.clone(),
                    ports::choose_port(listener.port, "Kafka client listener")?,
                ));
            }
            nodes.push(NodePorts {
                lab: ports::choose_port(requested, "Kafka")?,
                controller: ports::choose_port(None, "Kafka controller")?,
                listeners,
            });
        }
        let voters = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}@127.0.0.1:{}", i + 1, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = new_cluster_id();
        let mut brokers = Vec::new();
        for (i, ports) in nodes.into_iter().enumerate() {
            let node = i as u32 + 1;
            let broker =
                KafkaBroker::spawn(config, run_dir, node, ports, &voters, &cluster_id, fresh)?;
            brokers.push(broker);
        }
        let mut cluster = KafkaCluster { brokers };
        // Started together: a quorum of controllers must be up before any node is ready.
        for broker in &mut cluster.brokers {
            broker.wait_ready(config.ready_timeout).await?;
        }
        Ok(cluster)
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

    /// Every node's own client listener, comma-separated.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .iter()
            .map(KafkaBroker::bootstrap_server)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn brokers(&self) -> &[KafkaBroker] {
        &self.brokers
    }

    /// Node `node` (1-based), if there is one.
    pub fn broker_mut(&mut self, node: u32) -> Option<&mut KafkaBroker> {
        self.brokers.iter_mut().find(|b| b.node == node)
    }

    /// Every node's process id.
    pub fn pids(&self) -> Vec<u32> {
        self.brokers.iter().map(KafkaBroker::pid).collect()
    }

    /// The node that leads the most partitions of the topics whose names start with `prefix`
    /// (ties: the lowest id), asked of the cluster now; `None` if none is known.
    pub async fn leader_of(&self, prefix: &str) -> Option<u32> {
        let bootstrap = self.bootstrap_servers();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || partition_leaders(&bootstrap, &prefix))
            .await
            .ok()
            .flatten()
    }

    /// Controlled shutdown of every node, waiting for each.
    pub fn stop(&mut self) {
        for broker in self.brokers.iter_mut().rev() {
            broker.stop();
        }
    }
}

/// How many partitions of `prefix`'s topics each node leads; the node with the most.
fn partition_leaders(bootstrap: &str, prefix: &str) -> Option<u32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .ok()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    let mut led = std::collections::BTreeMap::<u32, usize>::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(prefix))
    {
        for partition in topic.partitions() {
            if partition.leader() >= 0 {
                *led.entry(partition.leader() as u32).or_default() += 1;
            }
        }
    }
    let most = led.values().copied().max()?;
    led.into_iter()
        .find(|(_, n)| *n == most)
        .map(|(node, _)| node)
}

/// One running node; stopped on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    node: u32,
    ports: NodePorts,
    config: KafkaConfig,
    dir: PathBuf,
    logs: PathBuf,
    server: ManagedChild,
}

impl KafkaBroker {
    /// Writes node `node`'s config, formats its storage when needed and starts it (not waiting).
    fn spawn(
        config: &KafkaConfig,
        run_dir: &Path,
        node: u32,
        ports: NodePorts,
        voters: &str,
        cluster_id: &str,
        fresh: bool,
    ) -> Result<KafkaBroker, EnvError> {
        let dir = if config.brokers == 1 {
            run_dir.join("kafka")
        } else {
            run_dir.join(format!("kafka-{node}"))
        };
        let logs = run_dir.join("logs");
        let properties = server_properties(config, &dir, node, &ports, voters);
        write(&dir.join("server.properties"), &properties)?;
        write(&dir.join("log4j2.properties"), LOG4J2_CONFIG)?;

        // A broker an earlier lab left running here goes first: it owns the storage.
        if let Some(pid) = std::fs::read_to_string(dir.join("broker.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            stop_leftover(pid, &dir.display().to_string(), libc::SIGTERM);
        }
        let data = dir.join("data");
        // Every node of a new cluster needs the same cluster id: a reused node of another
        // cluster would be refused, so a multi-node cluster always starts on fresh storage.
        if (fresh || config.brokers > 1) && data.exists() {
            std::fs::remove_dir_all(&data).map_err(|source| EnvError::Io {
                what: "emptying the broker's storage",
                path: data.clone(),
                source,
            })?;
        }
        if !data.join("meta.properties").exists() {
            format_storage(config, &dir, &logs, node, cluster_id)?;
        }
        let server = launch(config, &dir, &logs, node)?;
        Ok(KafkaBroker {
            node,
            ports,
            config: config.clone(),
            dir,
            logs,
            server,
        })
    }

    /// Starts this node again on its storage and ports (after a crash, say) and waits until it
    /// is back in the cluster. A still-running process is killed first.
    pub async fn restart(&mut self) -> Result<(), EnvError> {
        if self.server.is_running() {
            self.server.kill();
        }
        self.server = launch(&self.config, &self.dir, &self.logs, self.node)?;
        self.wait_ready(self.config.ready_timeout).await
    }

    /// This node's id (1-based).
    pub fn node(&self) -> u32 {
        self.node
    }

    /// `host:port` of this node's own client listener.
    pub fn bootstrap_server(&self) -> String {
        format!("127.0.0.1:{}", self.ports.lab)
    }

    /// The bound port of a named client listener of this node.
    pub fn listener_port(&self, name: &str) -> Option<u16> {
        self.ports
            .listeners
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
        let bootstrap = self.bootstrap_server();
        let node = self.node;
        let in_metadata = || {
            let probe = bootstrap.clone();
            async move {
                tokio::task::spawn_blocking(move || node_in_metadata(&probe, node))
                    .await
                    .unwrap_or(false)
            }
        };
        let every = Duration::from_millis(100);
        self.server
            .wait_ready("kafka", None, timeout, every, in_metadata)
            .await?;
        tracing::info!(node, port = self.ports.lab, elapsed = ?started.elapsed(), "Kafka ready");
        Ok(())
    }
}

/// Starts node `node` from the config in `dir`, its output in the run's log directory.
fn launch(
    config: &KafkaConfig,
    dir: &Path,
    logs: &Path,
    node: u32,
) -> Result<ManagedChild, EnvError> {
    let mut command = java_command(config, dir, logs);
    command
        .arg("kafka.Kafka")
        .arg(dir.join("server.properties"));
    let stop = StopPolicy {
        signal: libc::SIGTERM,
        grace: Duration::from_secs(20),
    };
    let name = if config.brokers == 1 {
        "kafka".to_string()
    } else {
        format!("kafka-{node}")
    };
    let server = ManagedChild::spawn(&name, command, &logs.join(format!("{name}.log")), stop)
        .map_err(|source| EnvError::Spawn {
            what: "kafka (java)",
            source,
        })?;
    write(&dir.join("broker.pid"), &server.pid().to_string())?;
    Ok(server)
}

/// Whether a metadata request through `bootstrap` lists node `node` (blocking, ≤ 1 s).
fn node_in_metadata(bootstrap: &str, node: u32) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "1000")
        .set("log_level", "0")
        .create();
    match consumer {
        Ok(consumer) => consumer
            .fetch_metadata(None, Duration::from_secs(1))
            .map(|m| m.brokers().iter().any(|b| b.id() == node as i32))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn server_properties(
    config: &KafkaConfig,
    dir: &Path,
    node: u32,
    ports: &NodePorts,
    voters: &str,
) -> String {
    let port = ports.lab;
    let mut listeners = vec![
        format!("LAB://127.0.0.1:{port}"),
        format!("CONTROLLER://127.0.0.1:{}", ports.controller),
    ];
    let mut advertised = vec![format!("LAB://127.0.0.1:{port}")];
    let mut protocols = vec![
        "LAB:PLAINTEXT".to_string(),
        "CONTROLLER:PLAINTEXT".to_string(),
    ];
    let specs = config.client_listeners.iter().filter(|l| l.node == node);
    for ((name, bound), spec) in ports.listeners.iter().zip(specs) {
        listeners.push(format!("{name}://127.0.0.1:{bound}"));
        let shown = spec
            .advertised
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!("127.0.0.1:{bound}"));
        advertised.push(format!("{name}://{shown}"));
        protocols.push(format!("{name}:PLAINTEXT"));
    }
    let replicas = config.replication_factor().to_string();
    let min_isr = config.min_insync_replicas().to_string();
    let mut text = String::from(
        "# Written by the lab for one KRaft node (broker and controller); see common/src/env/kafka.rs.\n",
    );
    let settings = [
        ("process.roles", "broker,controller".to_string()),
        ("node.id", node.to_string()),
        ("controller.quorum.voters", voters.to_string()),
        ("controller.listener.names", "CONTROLLER".into()),
        ("inter.broker.listener.name", "LAB".into()),
        ("listeners", listeners.join(",")),
        ("advertised.listeners", advertised.join(",")),
        ("listener.security.protocol.map", protocols.join(",")),
        ("log.dirs", dir.join("data").display().to_string()),
        ("num.partitions", config.partitions.to_string()),
        ("auto.create.topics.enable", "false".into()),
        // Topics the lab creates take the broker's default replication (one copy per node, at
        // most 3), and an `acks=all` write needs `min.insync.replicas` of them.
        ("default.replication.factor", replicas.clone()),
        ("min.insync.replicas", min_isr.clone()),
        ("offsets.topic.replication.factor", replicas.clone()),
        // Few internal partitions: a broker with 50+50 of them takes ~1.5 s longer to start.
        ("offsets.topic.num.partitions", "4".into()),
        ("transaction.state.log.replication.factor", replicas.clone()),
        ("transaction.state.log.min.isr", min_isr.clone()),
        ("transaction.state.log.num.partitions", "4".into()),
        ("share.coordinator.state.topic.replication.factor", replicas),
        ("share.coordinator.state.topic.min.isr", min_isr),
        ("group.initial.rebalance.delay.ms", "0".into()),
        // After a SIGKILL the controller keeps the dead broker's registration until its
        // session times out (default 9 s) and refuses the restarted one until then; a
        // broker-crash fault would measure that timer, not recovery. 2 s, heartbeats 500 ms.
        // The same timer fences a paused or crashed node so its partitions get new leaders.
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

fn format_storage(
    config: &KafkaConfig,
    dir: &Path,
    logs: &Path,
    node: u32,
    cluster_id: &str,
) -> Result<(), EnvError> {
    let log = &logs.join(format!("kafka-format-{node}.log"));
    // Its own log directory, so its config dump does not land in the broker's server.log.
    let mut command = java_command(config, dir, &logs.join("kafka-format"));
    command
        .arg("kafka.tools.StorageTool")
        .arg("format")
        .arg("--cluster-id")
        .arg(cluster_id)
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
