//! The inbound side: a consumer group whose offsets are stored only after the handler's local
//! transaction committed (at-least-once), with messages dispatched to a few lanes by partition so
//! that partitions are handled in parallel while each partition — and so each order — stays in
//! order. Duplicates are recognised inside the handler's own transaction ([`first_delivery`]).

use crate::error::SagaError;
use crate::message::{Envelope, PRODUCED_AT_HEADER};
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
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod lane;
pub mod watchdog;

/// A handler of decoded messages. It must apply the message's effect in one local transaction
/// that also called [`first_delivery`], and return only after that transaction committed.
pub trait MessageHandler: Send + Sync + 'static {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), SagaError>>;

    /// Several messages of one lane, in order, in one local transaction (one commit; each
    /// deduped on its own), or `None` if this handler takes messages one at a time. `Err` means
    /// none of them took effect; the lane then hands them to [`handle`](Self::handle) one by one.
    fn handle_batch<'a>(
        &'a self,
        _envelopes: &'a [Envelope],
    ) -> Option<BoxFuture<'a, Result<(), SagaError>>> {
        None
    }
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
/// A client the [`watchdog`] finds stalled is closed and replaced by a new one (a new member of
/// the same group, resuming from the committed offsets; the dedupe absorbs redeliveries).
pub async fn run<H: MessageHandler>(
    spec: ConsumerSpec,
    handler: Arc<H>,
    metrics: MetricsRegistry,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SagaError> {
    metrics.set_setting(
        "consumer.watchdog.stall_window_ms",
        watchdog::STALL_WINDOW.as_millis().to_string(),
    );
    loop {
        match session(&spec, handler.clone(), &metrics, &mut shutdown).await? {
            SessionEnd::Shutdown => return Ok(()),
            SessionEnd::Stalled(stall) => {
                metrics.add(crate::telemetry::CONSUMER_REPLACED, 1);
                tracing::warn!(group = %spec.group, %stall, "the consumer stopped consuming; replacing it with a new client");
            }
        }
    }
}

enum SessionEnd {
    Shutdown,
    /// Why the client was given up.
    Stalled(String),
}

/// One client's life: subscribe, dispatch to the lanes, commit; ends on shutdown, on a fatal
/// client error (as `Err`) or when the watchdog finds the client stalled.
async fn session<H: MessageHandler>(
    spec: &ConsumerSpec,
    handler: Arc<H>,
    metrics: &MetricsRegistry,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<SessionEnd, SagaError> {
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
    let probe = Arc::new(
        watchdog::probe_client(&spec.bootstrap, &spec.group).map_err(|source| {
            SagaError::Kafka {
                what: "creating the consumer's watchdog client",
                source,
            }
        })?,
    );

    let mut lanes = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..spec.lanes.max(1) {
        let (tx, rx) = mpsc::channel::<Delivery>(64);
        senders.push(tx);
        lanes.push(tokio::spawn(lane::run(
            rx,
            handler.clone(),
            consumer.clone(),
            metrics.clone(),
        )));
    }
    let mut commit_tick = tokio::time::interval(Duration::from_millis(200));
    let mut watchdog_tick = tokio::time::interval(watchdog::CHECK_EVERY);
    watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_received = Instant::now();
    let mut watch = watchdog::Watch::default();
    let mut end = Ok(SessionEnd::Shutdown);
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
            _ = watchdog_tick.tick(), if last_received.elapsed() >= watchdog::CHECK_EVERY => {
                let (client, probe, topics) = (consumer.clone(), probe.clone(), spec.topics.clone());
                let look = tokio::task::spawn_blocking(move || watchdog::snapshot(&client, &probe, &topics));
                match tokio::time::timeout(watchdog::LOOK_BUDGET, look).await {
                    Ok(Ok(Ok(now))) => {
                        if let Some(stall) = watch.observe(&now) {
                            end = Ok(SessionEnd::Stalled(stall.to_string()));
                            break;
                        }
                    }
                    // The broker could not be asked: an outage, not a stall; look again later.
                    Ok(Ok(Err(err))) => tracing::info!(cause = %err, "the watchdog could not read progress"),
                    Ok(Err(panicked)) => tracing::error!(cause = %panicked, "the watchdog's check panicked"),
                    // The client's own state did not answer (the broker questions are bounded).
                    Err(_) => {
                        end = Ok(SessionEnd::Stalled(format!(
                            "the client did not report its assignment and positions within {} s",
                            watchdog::LOOK_BUDGET.as_secs()
                        )));
                        break;
                    }
                }
            }
            received = consumer.recv() => match received {
                Ok(msg) => {
                    last_received = Instant::now();
                    watch.reset();
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
                    if common::failpoint::fires("consumer-stops-fetching") {
                        stop_fetching(&consumer);
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
                    end = Err(SagaError::Kafka { what: "consuming", source: err });
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
    close(consumer, &spec.group).await;
    end
}

/// Commits what the lanes stored and closes the client (leaving the group), off the async
/// threads: librdkafka's commit and close block, a stalled client's as long as its stuck
/// request's socket timeout. After a short wait the session goes on without it: a member that
/// cannot leave cannot heartbeat either, so the broker drops it when its session (6 s) expires
/// and its partitions move to the new client.
async fn close(consumer: Arc<StreamConsumer>, group: &str) {
    const CLOSE_WAIT: Duration = Duration::from_secs(10);
    let closing = tokio::task::spawn_blocking(move || {
        commit(&consumer, CommitMode::Sync);
        drop(consumer)
    });
    if tokio::time::timeout(CLOSE_WAIT, closing).await.is_err() {
        tracing::warn!(%group, "the old consumer did not close within {} s; going on without it", CLOSE_WAIT.as_secs());
    }
}

/// The fail point `consumer-stops-fetching`: pauses every held partition, as the stuck client
/// seen after a broker pause did — a member that keeps heartbeating and never fetches.
fn stop_fetching(consumer: &StreamConsumer) {
    match consumer.assignment().and_then(|held| consumer.pause(&held)) {
        Ok(()) => tracing::warn!("fail point: the consumer stops fetching"),
        Err(err) => tracing::error!(cause = %err, "fail point: pausing the partitions failed"),
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
