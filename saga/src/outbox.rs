//! The transactional outbox and its relay. Durability contract: a handler's outgoing messages are
//! rows in its own database, committed in the same transaction as its business change; the relay
//! publishes committed rows in id order with an idempotent producer, waits for the broker's ack,
//! and only then marks them published. A crash between publish and mark re-publishes on restart
//! (consumers dedupe by message id); nothing committed is ever lost.

use crate::error::SagaError;
use crate::message::{Envelope, PRODUCED_AT_HEADER};
use common::api::unix_micros_now;
use common::kafka_clients::{
    effective_settings, idempotent_producer_config, ClientRole, ClientTuning,
};
use common::metrics::MetricsRegistry;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Writes one outgoing message inside the caller's transaction.
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    envelope: &Envelope,
) -> Result<(), SagaError> {
    sqlx::query(
        "INSERT INTO outbox (message_id, topic, msg_key, payload, created_at) \
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(envelope.message_id)
    .bind(topic)
    .bind(envelope.order_id.to_string())
    .bind(envelope.encode())
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("inserting an outbox row"))?;
    Ok(())
}

/// Wakes the relay after a commit, so that publishing adds no polling delay. Cheap to clone.
#[derive(Clone, Default)]
pub struct RelaySignal(Arc<Notify>);

impl RelaySignal {
    /// Call after every commit that wrote outbox rows.
    pub fn committed(&self) {
        self.0.notify_one();
    }
}

/// How the relay batches and how often it looks without being woken.
#[derive(Clone, Debug)]
pub struct RelayPolicy {
    pub batch: i64,
    /// Safety net only: rows committed by another process or missed wake-ups.
    pub poll_interval: Duration,
    /// Test knob: publish every row twice (consumers must absorb the duplicates).
    pub publish_twice: bool,
    /// Published rows are deleted after this long; they are needed only until published.
    pub retention: Duration,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        RelayPolicy {
            batch: 256,
            poll_interval: Duration::from_millis(250),
            publish_twice: false,
            retention: Duration::from_secs(600),
        }
    }
}

/// How long a batch may wait for the broker's acks before the relay gives up on its producer.
/// Messages never time out inside the producer (`message.timeout.ms=0`), so without this a
/// producer that wedged would hold the relay forever: after a 2 s broker pause, librdkafka
/// 2.12's idempotent producer sometimes never acked nor failed again, and every saga waiting on
/// that process's outbox stalled with it (seen in about 1 of 20 broker-pause runs). The rows
/// are still unmarked, so a fresh producer publishes them again; consumers dedupe by message id,
/// and since both producers deliver a partition's messages in order, every message's first
/// delivery stays in order.
pub const ACK_WAIT: Duration = Duration::from_secs(15);

fn create_producer(config: &rdkafka::ClientConfig) -> Result<FutureProducer, SagaError> {
    config.create().map_err(|source| SagaError::Kafka {
        what: "creating the relay producer",
        source,
    })
}

/// Why a batch was not published.
enum PublishError {
    /// The producer did not acknowledge all of it within [`ACK_WAIT`].
    NoAck {
        rows: usize,
    },
    Failed(SagaError),
}

impl From<SagaError> for PublishError {
    fn from(err: SagaError) -> Self {
        PublishError::Failed(err)
    }
}

/// Publishes one database's outbox.
pub struct OutboxRelay {
    pool: PgPool,
    producer: FutureProducer,
    /// The producer's configuration, to replace a producer that stopped acknowledging.
    producer_config: rdkafka::ClientConfig,
    /// Set by the fail point `relay-producer-wedges`: this producer's sends never complete, as
    /// the wedged producer's did. A replacement producer is sound again.
    wedged: std::sync::atomic::AtomicBool,
    signal: RelaySignal,
    policy: RelayPolicy,
    metrics: MetricsRegistry,
}

struct Row {
    id: i64,
    topic: String,
    key: String,
    payload: Vec<u8>,
    /// Microseconds the row waited between insert and this read.
    age_us: i64,
}

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        bootstrap: &str,
        tuning: &ClientTuning,
        signal: RelaySignal,
        policy: RelayPolicy,
        metrics: MetricsRegistry,
    ) -> Result<OutboxRelay, SagaError> {
        let mut config = idempotent_producer_config(bootstrap, tuning);
        // Never give up on a message (0 = no timeout): a failed send in the middle of a batch
        // would let later rows of the same order overtake it when the batch is re-sent. Through
        // a broker outage the relay simply waits; the idempotent producer keeps per-partition
        // order across its internal retries.
        config.set("message.timeout.ms", "0");
        for (name, value) in effective_settings(&config, ClientRole::Producer) {
            metrics.set_setting(name, value);
        }
        let producer = create_producer(&config)?;
        metrics.set_setting("relay.ack_wait_ms", ACK_WAIT.as_millis());
        Ok(OutboxRelay {
            pool,
            producer,
            producer_config: config,
            wedged: Default::default(),
            signal,
            policy,
            metrics,
        })
    }

    /// Publishes until `shutdown` flips to true. Errors are logged and retried with backoff:
    /// a relay that stops would stall every saga.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        let mut pruned = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if pruned.elapsed() > self.policy.retention / 10 {
                pruned = tokio::time::Instant::now();
                if let Err(err) = self.prune().await {
                    tracing::warn!(cause = %err, "pruning the outbox failed");
                }
            }
            // A batch abandoned at shutdown is not marked: it goes out again after a restart.
            let published = tokio::select! {
                published = self.publish_pending() => published,
                _ = shutdown.changed() => return,
            };
            match published {
                Ok(0) => {
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        _ = self.signal.0.notified() => {}
                        _ = tokio::time::sleep(self.policy.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => backoff = Duration::from_millis(50),
                Err(PublishError::NoAck { rows }) => {
                    tracing::warn!(rows, "a batch was not acknowledged within {} s; replacing the relay's producer and publishing the batch again", ACK_WAIT.as_secs());
                    self.metrics.add("relay.producer_replaced", 1);
                    if let Err(err) = self.replace_producer() {
                        tracing::warn!(cause = %err, "creating a new relay producer failed; retrying");
                        tokio::time::sleep(backoff).await;
                    }
                }
                Err(PublishError::Failed(err)) => {
                    tracing::warn!(cause = %err, ?backoff, "outbox relay failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Deletes rows published longer than the retention ago.
    async fn prune(&self) -> Result<(), SagaError> {
        sqlx::query(
            "DELETE FROM outbox WHERE published_at < clock_timestamp() - $1 * interval '1 microsecond'",
        )
        .bind(self.policy.retention.as_micros() as f64)
        .execute(&self.pool)
        .await
        .map_err(SagaError::db("pruning the outbox"))?;
        Ok(())
    }

    /// A new producer in place of one that stopped acknowledging. The old one is dropped on a
    /// blocking thread (dropping purges its queue and waits for its threads) and not waited for.
    fn replace_producer(&mut self) -> Result<(), SagaError> {
        let fresh = create_producer(&self.producer_config)?;
        let old = std::mem::replace(&mut self.producer, fresh);
        self.wedged = Default::default();
        tokio::task::spawn_blocking(move || drop(old));
        Ok(())
    }

    /// One batch: read unpublished rows in id order, publish them all, then mark them.
    async fn publish_pending(&self) -> Result<usize, PublishError> {
        let rows: Vec<(i64, String, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, topic, msg_key, payload, \
                    (EXTRACT(EPOCH FROM clock_timestamp() - created_at) * 1000000)::bigint \
             FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.policy.batch)
        .fetch_all(&self.pool)
        .await
        .map_err(SagaError::db("reading the outbox"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Row ages are as of this read; the time to the broker's ack is added below.
        let read_at = std::time::Instant::now();
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|(id, topic, key, payload, age_us)| Row {
                id,
                topic,
                key,
                payload,
                age_us,
            })
            .collect();
        let copies = if self.policy.publish_twice { 2 } else { 1 };
        // Sends are queued in id order; the idempotent producer keeps that order per partition.
        let sends = rows
            .iter()
            .flat_map(|row| (0..copies).map(move |_| self.send(row)));
        let acks = tokio::time::timeout(ACK_WAIT, join_all(sends))
            .await
            .map_err(|_| PublishError::NoAck { rows: rows.len() })?;
        for result in acks {
            result?;
        }
        let since_read = read_at.elapsed();
        for row in &rows {
            self.metrics.record(
                crate::telemetry::RELAY_DELAY,
                Duration::from_micros(row.age_us.max(0) as u64) + since_read,
            );
        }
        self.metrics.add("relay.published", rows.len() as u64);
        let bytes: usize = rows.iter().map(|r| r.payload.len()).sum();
        self.metrics.add("relay.bytes", bytes as u64);
        common::failpoint::pass("relay-after-publish").await;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        // The mark need not be forced to disk: if it is lost, the rows go out again and the
        // consumers' dedupe absorbs them. Not forcing the flush halves the relay's fsyncs.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SagaError::db("beginning a mark"))?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(SagaError::db("relaxing the mark's commit"))?;
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(SagaError::db("marking outbox rows published"))?;
        tx.commit()
            .await
            .map_err(SagaError::db("committing a mark"))?;
        Ok(rows.len())
    }

    async fn send(&self, row: &Row) -> Result<(), SagaError> {
        use std::sync::atomic::Ordering;
        if common::failpoint::fires("relay-producer-wedges") {
            tracing::warn!("fail point: the relay's producer stops acknowledging");
            self.wedged.store(true, Ordering::SeqCst);
        }
        if self.wedged.load(Ordering::SeqCst) {
            return futures::future::pending().await;
        }
        let produced = unix_micros_now().to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: PRODUCED_AT_HEADER,
            value: Some(produced.as_str()),
        });
        let record = FutureRecord::to(&row.topic)
            .key(&row.key)
            .payload(&row.payload)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| SagaError::Kafka {
                what: "publishing an outbox row",
                source,
            })
    }
}
