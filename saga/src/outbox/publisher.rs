//! The relay's publishing loop: rows go to the producer as they arrive — handed over by a
//! committed transaction or claimed by the sweep — and each acknowledged row goes to the marker.
//! Nothing waits for a batch to finish before the next row is sent.

use super::{marker, sweep, Claims, Handoff, RelayHandle, RelayPolicy, Row};
use crate::error::SagaError;
use crate::message::PRODUCED_AT_HEADER;
use common::api::unix_micros_now;
use common::kafka_clients::{
    effective_settings, idempotent_producer_config, ClientRole, ClientTuning,
};
use common::metrics::MetricsRegistry;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long a sent row may wait for the broker's ack before the relay gives up on its producer.
/// Messages never time out inside the producer (`message.timeout.ms=0`), so without this a
/// producer that wedged would hold its rows forever: after a 2 s broker pause, librdkafka
/// 2.12's idempotent producer sometimes never acked nor failed again, and every saga waiting on
/// that process's outbox stalled with it (seen in about 1 of 20 broker-pause runs). A fresh
/// producer sends every unacknowledged row again, in id order; consumers dedupe by message id.
pub const ACK_WAIT: Duration = Duration::from_secs(15);

/// How often the relay looks for a row waiting longer than [`ACK_WAIT`].
const WEDGE_CHECK: Duration = Duration::from_secs(1);

/// A row sent and not yet acknowledged.
struct InFlight {
    row: Row,
    sent: Instant,
    /// Acks still missing (two per row with `publish_twice`).
    awaiting: u8,
}

/// One ack: the row's id, the producer generation that sent it, and how it went.
type Ack = BoxFuture<'static, (i64, u64, Result<(), KafkaError>)>;

/// Publishes one database's outbox.
pub struct OutboxRelay {
    pool: PgPool,
    producer: FutureProducer,
    /// The producer's configuration, to replace a producer that stopped acknowledging.
    producer_config: rdkafka::ClientConfig,
    /// Counts producers; acks of a replaced one are ignored.
    generation: u64,
    /// Set by the fail point `relay-producer-wedges`: this producer's sends never complete, as
    /// the wedged producer's did. A replacement producer is sound again.
    wedged: bool,
    handle: RelayHandle,
    inbox: mpsc::UnboundedReceiver<Handoff>,
    claims: Claims,
    in_flight: BTreeMap<i64, InFlight>,
    acks: FuturesUnordered<Ack>,
    policy: RelayPolicy,
    metrics: MetricsRegistry,
}

fn create_producer(config: &rdkafka::ClientConfig) -> Result<FutureProducer, SagaError> {
    config.create().map_err(|source| SagaError::Kafka {
        what: "creating the relay producer",
        source,
    })
}

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        bootstrap: &str,
        tuning: &ClientTuning,
        policy: RelayPolicy,
        metrics: MetricsRegistry,
    ) -> Result<OutboxRelay, SagaError> {
        let mut config = idempotent_producer_config(bootstrap, tuning);
        // Never give up on a message (0 = no timeout): a failed send would let later rows of the
        // same order overtake it when the sweep sends it again. Through a broker outage the
        // rows simply wait; the idempotent producer keeps per-partition order across its
        // internal retries.
        config.set("message.timeout.ms", "0");
        for (name, value) in effective_settings(&config, ClientRole::Producer) {
            metrics.set_setting(name, value);
        }
        metrics.set_setting("relay.ack_wait_ms", ACK_WAIT.as_millis());
        metrics.set_setting("relay.sweep_interval_ms", policy.poll_interval.as_millis());
        metrics.set_setting("relay.sweep_grace_ms", policy.sweep_grace.as_millis());
        let producer = create_producer(&config)?;
        let (tx, inbox) = mpsc::unbounded_channel();
        Ok(OutboxRelay {
            pool,
            producer,
            producer_config: config,
            generation: 0,
            wedged: false,
            handle: RelayHandle::new(tx),
            inbox,
            claims: Claims::default(),
            in_flight: BTreeMap::new(),
            acks: FuturesUnordered::new(),
            policy,
            metrics,
        })
    }

    /// Where the process's handlers hand their committed rows.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Publishes until `shutdown` flips to true, with the sweep and the marker beside it. Rows
    /// sent and not yet marked at shutdown go out again after a restart.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (acked, to_mark) = mpsc::unbounded_channel();
        let marker = tokio::spawn(marker::run(
            self.pool.clone(),
            to_mark,
            self.claims.clone(),
            shutdown.clone(),
        ));
        let sweep = tokio::spawn(sweep::run(
            self.pool.clone(),
            self.handle.publisher.clone(),
            self.claims.clone(),
            self.policy.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let mut wedge_check = tokio::time::interval(WEDGE_CHECK);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(handoff) = self.inbox.recv() => {
                    for row in handoff.rows {
                        // A swept row was claimed by the sweep; a handed-over one may have been
                        // claimed by a sweep that found it first.
                        if handoff.swept || self.claims.claim(row.id) {
                            self.send(row);
                        }
                    }
                }
                Some((id, generation, result)) = self.acks.next(), if !self.acks.is_empty() => {
                    if generation == self.generation {
                        self.acknowledged(id, result, &acked);
                    }
                }
                _ = wedge_check.tick() => self.replace_if_wedged(),
            }
        }
        let _ = marker.await;
        let _ = sweep.await;
    }

    /// Gives one row to the producer (twice with `publish_twice`); never waits.
    fn send(&mut self, row: Row) {
        if common::failpoint::fires("relay-producer-wedges") {
            tracing::warn!("fail point: the relay's producer stops acknowledging");
            self.wedged = true;
        }
        let copies: u8 = if self.policy.publish_twice { 2 } else { 1 };
        for _ in 0..copies {
            let ack = self.publish(&row);
            self.acks.push(ack);
        }
        let sent = Instant::now();
        self.in_flight.insert(
            row.id,
            InFlight {
                row,
                sent,
                awaiting: copies,
            },
        );
    }

    fn publish(&self, row: &Row) -> Ack {
        let (id, generation) = (row.id, self.generation);
        if self.wedged {
            return futures::future::pending().boxed();
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
        match self.producer.send_result(record) {
            Ok(delivery) => async move {
                let result = match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((err, _))) => Err(err),
                    Err(_canceled) => Err(KafkaError::Canceled),
                };
                (id, generation, result)
            }
            .boxed(),
            Err((err, _)) => futures::future::ready((id, generation, Err(err))).boxed(),
        }
    }

    fn acknowledged(
        &mut self,
        id: i64,
        result: Result<(), KafkaError>,
        acked: &mpsc::UnboundedSender<i64>,
    ) {
        let Some(flight) = self.in_flight.get_mut(&id) else {
            return;
        };
        if let Err(err) = result {
            // Only a send the producer refused outright ends here (`message.timeout.ms=0`), e.g.
            // a full queue. The row is released unmarked: the sweep sends it again.
            tracing::warn!(cause = %err, id, "publishing an outbox row failed; the sweep retries it");
            self.metrics.add("relay.send_failed", 1);
            self.in_flight.remove(&id);
            self.claims.release(&[id]);
            return;
        }
        flight.awaiting -= 1;
        if flight.awaiting > 0 {
            return;
        }
        let row = self.in_flight.remove(&id).expect("present above").row;
        self.metrics
            .record(crate::telemetry::RELAY_DELAY, row.inserted.elapsed());
        self.metrics.add("relay.published", 1);
        self.metrics.add("relay.bytes", row.payload.len() as u64);
        let _ = acked.send(id);
    }

    /// A producer that left a row unacknowledged for [`ACK_WAIT`] is replaced, and every row in
    /// flight is sent again through the new one, in id order.
    fn replace_if_wedged(&mut self) {
        let oldest = self.in_flight.values().map(|f| f.sent).min();
        if oldest.is_none_or(|sent| sent.elapsed() < ACK_WAIT) {
            return;
        }
        let rows = self.in_flight.len();
        tracing::warn!(rows, "rows were not acknowledged within {} s; replacing the relay's producer and sending them again", ACK_WAIT.as_secs());
        let fresh = match create_producer(&self.producer_config) {
            Ok(fresh) => fresh,
            Err(err) => {
                tracing::warn!(cause = %err, "creating a new relay producer failed; retrying");
                return;
            }
        };
        self.metrics.add("relay.producer_replaced", 1);
        let old = std::mem::replace(&mut self.producer, fresh);
        // Dropping purges the old producer's queue and waits for its threads: not here.
        tokio::task::spawn_blocking(move || drop(old));
        self.generation += 1;
        self.wedged = false;
        self.acks = FuturesUnordered::new();
        for (_, flight) in std::mem::take(&mut self.in_flight) {
            self.send(flight.row);
        }
    }
}
