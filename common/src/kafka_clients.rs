//! Kafka client settings the lab relies on, in one place so that every process uses the same and
//! every result can record them.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// Latency-relevant client settings (DESIGN §4): recorded in every result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientTuning {
    /// Consumer: longest a fetch waits for `fetch_min_bytes` before answering.
    pub fetch_wait_max_ms: u32,
    /// Consumer: bytes a fetch waits for.
    pub fetch_min_bytes: u32,
    /// Producer: how long a batch may wait for more messages.
    pub linger_ms: u32,
    /// Both: the longest wait between attempts to reach a broker that is down. librdkafka's
    /// default (10 s) can leave a client away from a restarted broker for that long; on the
    /// lab's one broker, 1 s costs nothing and keeps the backoff out of recovery times.
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u32,
}

fn default_reconnect_backoff_max_ms() -> u32 {
    1_000
}

impl Default for ClientTuning {
    fn default() -> Self {
        ClientTuning {
            fetch_wait_max_ms: 500,
            fetch_min_bytes: 1,
            linger_ms: 0,
            reconnect_backoff_max_ms: default_reconnect_backoff_max_ms(),
        }
    }
}

/// Session of a KIP-848 consumer group member, set on the broker (`group.consumer.*`): 6 s, not
/// the default 45 s, so that a killed saga service's partitions move on soon enough to measure.
pub const GROUP_SESSION_TIMEOUT_MS: u32 = 6_000;

/// The metrics counter a saga process sets to 1 once its consumer holds its first partition
/// assignment. Until then the process listens but handles nothing (on a fresh broker, joining
/// the group waits for `__consumer_offsets` to be created and loaded), so the lab waits for it
/// before it measures.
pub const CONSUMER_ASSIGNED: &str = "kafka.consumer_assigned";

/// An idempotent producer: `enable.idempotence=true` implies `acks=all` and in-order, no-duplicate
/// delivery per partition across retries.
pub fn idempotent_producer_config(bootstrap: &str, tuning: &ClientTuning) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("socket.nagle.disable", "true")
        // One produce request in flight per connection. Seen with five: three OrderCreated
        // events reported delivered (no failed delivery, rows marked) that the broker never
        // wrote; the partition's log held sequence 3 as that producer's first. Our reading, not
        // observed on the wire: the first request to a brand-new partition failed while the
        // next was written (the broker takes any first sequence from a producer it has no state
        // for), and the retried 0-2 came back as duplicates. With one request in flight a later
        // batch cannot overtake the first. Under load the one request carries everything
        // queued meanwhile.
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", tuning.linger_ms.to_string())
        .set(
            "reconnect.backoff.max.ms",
            tuning.reconnect_backoff_max_ms.to_string(),
        )
        .set("message.timeout.ms", "30000");
    config
}

/// A group consumer that never commits by itself: offsets are stored only after the effect of a
/// message is durable (at-least-once), and committed by the caller.
pub fn manual_commit_consumer_config(
    bootstrap: &str,
    group: &str,
    tuning: &ClientTuning,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("socket.nagle.disable", "true")
        .set("fetch.wait.max.ms", tuning.fetch_wait_max_ms.to_string())
        .set("fetch.min.bytes", tuning.fetch_min_bytes.to_string())
        .set(
            "reconnect.backoff.max.ms",
            tuning.reconnect_backoff_max_ms.to_string(),
        );
    config
}

/// Creates the topics with the broker's default replication (`default.replication.factor`:
/// one copy on a single broker, three on the replicated cluster); topics that exist already
/// are fine.
pub async fn create_topics(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::error!(topic, ?code, "topic creation failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// The broker settings that bear on latency, durability and recovery, recorded with every
/// result as the broker reports them.
pub const REPORTED_BROKER_CONFIGS: [&str; 9] = [
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "min.insync.replicas",
    "num.network.threads",
    "num.io.threads",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.coordinator.rebalance.protocols",
    "log.segment.bytes",
];

/// [`REPORTED_BROKER_CONFIGS`] of the first broker the cluster's metadata lists, as it reports
/// them (DescribeConfigs), by name.
pub async fn broker_configs(
    bootstrap: &str,
) -> Result<std::collections::BTreeMap<String, String>, KafkaError> {
    use rdkafka::admin::ResourceSpecifier;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let config = {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap);
        c
    };
    let metadata_config = config.clone();
    let broker = tokio::task::spawn_blocking(move || -> Result<i32, KafkaError> {
        let consumer: BaseConsumer = metadata_config.create()?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        metadata
            .brokers()
            .first()
            .map(|b| b.id())
            .ok_or(KafkaError::MetadataFetch(
                RDKafkaErrorCode::BrokerNotAvailable,
            ))
    })
    .await
    .map_err(|_| KafkaError::MetadataFetch(RDKafkaErrorCode::Fail))??;
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut found = std::collections::BTreeMap::new();
    for resource in admin
        .describe_configs(&[ResourceSpecifier::Broker(broker)], &options)
        .await?
    {
        let resource = resource.map_err(KafkaError::AdminOp)?;
        for entry in resource.entries {
            if REPORTED_BROKER_CONFIGS.contains(&entry.name.as_str()) {
                found.insert(entry.name, entry.value.unwrap_or_default());
            }
        }
    }
    Ok(found)
}

/// Deletes every topic and consumer group named `<prefix>.…` (a finished run's), so that the
/// next run on this broker, and a broker restart during it, do not carry its partitions. Groups
/// must be empty: stop their consumers first. Returns how many topics and groups were deleted.
pub async fn delete_prefixed(bootstrap: &str, prefix: &str) -> Result<(usize, usize), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let wanted = format!("{prefix}.");
    let timeout = Duration::from_secs(10);
    let metadata = admin.inner().fetch_metadata(None, timeout)?;
    let topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|name| name.starts_with(&wanted))
        .collect();
    let groups: Vec<String> = admin
        .inner()
        .fetch_group_list(None, timeout)?
        .groups()
        .iter()
        .map(|g| g.name().to_string())
        .filter(|name| name.starts_with(&wanted))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    if !groups.is_empty() {
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        for result in admin.delete_groups(&names, &options).await? {
            if let Err((group, code)) = result {
                tracing::warn!(group, ?code, "consumer group not deleted");
            }
        }
    }
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        for result in admin.delete_topics(&names, &options).await? {
            if let Err((topic, code)) = result {
                tracing::warn!(topic, ?code, "topic not deleted");
            }
        }
    }
    Ok((topics.len(), groups.len()))
}

/// The producer settings that bear on latency, durability and ordering, recorded with every
/// result as each saga process's librdkafka reports them (its defaults included): what the
/// processes really ran with, not what the lab meant to set.
pub const REPORTED_PRODUCER_SETTINGS: [&str; 10] = [
    "acks",
    "max.in.flight.requests.per.connection",
    "enable.idempotence",
    "linger.ms",
    "batch.num.messages",
    "compression.codec",
    "message.timeout.ms",
    "retry.backoff.ms",
    "socket.nagle.disable",
    "reconnect.backoff.max.ms",
];

/// The consumer settings that bear on latency and delivery, recorded likewise.
pub const REPORTED_CONSUMER_SETTINGS: [&str; 10] = [
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "group.protocol",
    "socket.nagle.disable",
    "reconnect.backoff.max.ms",
];

/// Which kind of client a configuration is for.
#[derive(Clone, Copy, Debug)]
pub enum ClientRole {
    Producer,
    Consumer,
}

/// `config`'s values for the settings reported for `role`, as librdkafka resolves them, keyed
/// `kafka.<role>.<name>` (e.g. `kafka.producer.linger.ms`).
pub fn effective_settings(config: &ClientConfig, role: ClientRole) -> Vec<(String, String)> {
    let Ok(native) = config.create_native_config() else {
        return Vec::new();
    };
    let (prefix, names): (&str, &[&str]) = match role {
        ClientRole::Producer => ("kafka.producer", &REPORTED_PRODUCER_SETTINGS),
        ClientRole::Consumer => ("kafka.consumer", &REPORTED_CONSUMER_SETTINGS),
    };
    names
        .iter()
        .filter_map(|name| Some((format!("{prefix}.{name}"), native.get(name).ok()?)))
        .collect()
}
