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
}

impl Default for ClientTuning {
    fn default() -> Self {
        ClientTuning {
            fetch_wait_max_ms: 10,
            fetch_min_bytes: 1,
            linger_ms: 0,
        }
    }
}

/// An idempotent producer: `enable.idempotence=true` implies `acks=all` and in-order, no-duplicate
/// delivery per partition across retries.
pub fn idempotent_producer_config(bootstrap: &str, tuning: &ClientTuning) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", tuning.linger_ms.to_string())
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
        .set("fetch.wait.max.ms", tuning.fetch_wait_max_ms.to_string())
        .set("fetch.min.bytes", tuning.fetch_min_bytes.to_string());
    config
}

/// Creates the topics (single replica); topics that exist already are fine.
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
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
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
