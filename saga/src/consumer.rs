//! The inbound side: a consumer group whose offsets are stored only after the handler's local
//! transaction committed (at-least-once), with messages dispatched to a few lanes by partition so
//! that partitions are handled in parallel while each partition — and so each order — stays in
//! order. Duplicates are recognised inside the handler's own transaction ([`first_delivery`]).

use crate::error::SagaError;
use crate::message::{DecodeFailure, Envelope, PRODUCED_AT_HEADER};
use common::api::unix_micros_now;
use common::kafka_clients::{
    effective_settings, manual_commit_consumer_config, ClientRole, ClientTuning,
};
use common::metrics::MetricsRegistry;
use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A handler of decoded messages. It must apply the message's effect in one local transaction
/// that also called [`first_delivery`], and return only after that transaction committed.
pub trait MessageHandler: Send + Sync + 'static {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), SagaError>>;
}

/// Records the message as processed inside `tx`; false if it was processed before, in which case
/// the caller must change nothing (and may commit or roll back the empty transaction).
pub async fn first_delivery(
    tx: &mut Transaction<'_, Postgres>,
    envelope: &Envelope,
) -> Result<bool, SagaError> {
    let inserted = sqlx::query(
        "INSERT INTO processed_messages (message_id) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(envelope.message_id)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("recording a processed message"))?
    .rows_affected();
    Ok(inserted == 1)
}

/// Where and how one process consumes.
pub struct ConsumerSpec {
    pub bootstrap: String,
    pub group: String,
    pub topics: Vec<String>,
    pub tuning: ClientTuning,
    /// Parallel lanes; partition `p` is handled by lane `p % lanes`.
    pub lanes: usize,
}

struct Delivery {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
    produced_us: Option<u64>,
}

/// Consumes until `shutdown`; returns after every lane finished and offsets were committed.
pub async fn run<H: MessageHandler>(
    spec: ConsumerSpec,
    handler: Arc<H>,
    metrics: MetricsRegistry,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SagaError> {
    let mut config = manual_commit_consumer_config(&spec.bootstrap, &spec.group, &spec.tuning);
    // The broker-driven group protocol (KIP-848). With the classic one, a broker outage longer
    // than the session made every consumer rejoin under a new member id, and the reloaded group
    // then waited for the old id's session to expire (6 s more) before any partition was
    // consumed again. Here a member keeps its id and its partitions across the outage. The
    // session (6 s) and heartbeat are set on the broker (`group.consumer.*`); a killed process
    // still waits for its dead member's session.
    config.set("group.protocol", "consumer");
    for (name, value) in effective_settings(&config, ClientRole::Consumer) {
        metrics.set_setting(name, value);
    }
    let consumer: StreamConsumer = config.create().map_err(|source| SagaError::Kafka {
        what: "creating the consumer",
        source,
    })?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| SagaError::Kafka {
            what: "subscribing",
            source,
        })?;
    let consumer = Arc::new(consumer);

    let mut lanes = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..spec.lanes.max(1) {
        let (tx, rx) = mpsc::channel::<Delivery>(64);
        senders.push(tx);
        lanes.push(tokio::spawn(lane(
            rx,
            handler.clone(),
            consumer.clone(),
            metrics.clone(),
        )));
    }
    let mut commit_tick = tokio::time::interval(Duration::from_millis(200));
    let mut fatal = None;
    let mut assigned = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = commit_tick.tick() => {
                commit(&consumer, CommitMode::Async);
                if !assigned && consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    assigned = true;
                    metrics.add(crate::telemetry::CONSUMER_ASSIGNED, 1);
                    tracing::info!(group = %spec.group, "the consumer holds its partitions");
                }
            }
            received = consumer.recv() => match received {
                Ok(msg) => {
                    let delivery = Delivery {
                        topic: msg.topic().to_string(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                        payload: msg.payload().unwrap_or_default().to_vec(),
                        produced_us: msg.headers().and_then(|h| {
                            h.iter().find(|h| h.key == PRODUCED_AT_HEADER)
                                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
                        }),
                    };
                    if let Some(produced) = delivery.produced_us {
                        metrics.record(
                            crate::telemetry::KAFKA_HOP,
                            Duration::from_micros(unix_micros_now().saturating_sub(produced)),
                        );
                    }
                    let lane = delivery.partition.unsigned_abs() as usize % senders.len();
                    if senders[lane].send(delivery).await.is_err() {
                        break;
                    }
                }
                Err(err @ rdkafka::error::KafkaError::MessageConsumptionFatal(_)) => {
                    // The client cannot recover by itself: stop (after the lanes drain) and
                    // let the process exit with the error, so its supervisor restarts it.
                    tracing::error!(cause = %err, "fatal consumer error; stopping");
                    fatal = Some(err);
                    break;
                }
                Err(err) => {
                    // These are queued client events (e.g. "all brokers down"), not failed polls:
                    // a short pause, never a growing backoff, or a backlog of them drains slowly
                    // and stalls the consumer long after the broker is back.
                    tracing::warn!(cause = %err, "consumer error; continuing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(senders);
    for lane in lanes {
        let _ = lane.await;
    }
    commit(&consumer, CommitMode::Sync);
    match fatal {
        Some(source) => Err(SagaError::Kafka {
            what: "consuming",
            source,
        }),
        None => Ok(()),
    }
}

fn commit(consumer: &StreamConsumer, mode: CommitMode) {
    // Nothing stored since the last commit is not an error worth a log line.
    if let Err(err) = consumer.commit_consumer_state(mode) {
        if !matches!(
            err.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
        ) {
            tracing::debug!(cause = %err, "offset commit failed; the next one retries");
        }
    }
}

/// Handles one lane's deliveries in order; a retryable failure is retried (the offset does not
/// move), anything else is logged and skipped so one poison message cannot stop the service.
async fn lane<H: MessageHandler>(
    mut rx: mpsc::Receiver<Delivery>,
    handler: Arc<H>,
    consumer: Arc<StreamConsumer>,
    metrics: MetricsRegistry,
) {
    while let Some(delivery) = rx.recv().await {
        metrics.add("messages.consumed", 1);
        match Envelope::decode(&delivery.payload) {
            Ok(envelope) => {
                let mut backoff = Duration::from_millis(20);
                loop {
                    match handler.handle(envelope.clone()).await {
                        Ok(()) => break,
                        Err(err) if err.is_retryable() => {
                            tracing::warn!(cause = %err, order_id = %envelope.order_id, ?backoff, "handler failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                        Err(err) => {
                            metrics.add("messages.failed", 1);
                            tracing::error!(cause = %err, order_id = %envelope.order_id, "handler failed for good; moving past the message (counted in messages.failed)");
                            break;
                        }
                    }
                }
            }
            Err(failure) => {
                metrics.add("messages.undecodable", 1);
                let reason = match failure {
                    DecodeFailure::Malformed(why) => why,
                    DecodeFailure::Version(v) => format!("schema version {v}"),
                };
                let err = SagaError::Undecodable {
                    topic: delivery.topic.clone(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                    reason,
                };
                tracing::error!(cause = %err, "undecodable message; moving past it (counted in messages.undecodable)");
            }
        }
        // The local transaction committed (or the message is given up for good): only now may the
        // group move past it. A crash right here redelivers it, and the dedupe absorbs it.
        common::failpoint::pass("consumer-before-offset-store").await;
        if let Err(err) =
            consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
        {
            tracing::warn!(cause = %err, "storing an offset failed (partition revoked?)");
        }
    }
}
