//! The transactional outbox and its relay. Durability contract: a handler's outgoing messages are
//! rows in its own database, committed in the same transaction as its business change, and the
//! rows stay the source of truth until the broker acknowledged them.
//!
//! Latency contract: publishing is off the handler's path and off any polling. A handler stages
//! its rows as it writes them ([`Staged`]) and, once its transaction committed, hands them to the
//! relay ([`RelayHandle::committed`]), which gives them to the producer at once; acknowledged rows
//! are marked published in batches afterwards ([`marker`]). A sweep ([`sweep`]) publishes only
//! what no hand-off brought: rows of a crashed process's last moments, rows whose send failed.
//! A crash between ack and mark publishes those rows again (consumers dedupe by message id);
//! nothing committed is ever lost.

use crate::error::SagaError;
use crate::message::Envelope;
use common::domain::OrderId;
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod marker;
mod publisher;
mod sweep;

pub use publisher::{OutboxRelay, ACK_WAIT};

/// One outbox row on its way to the broker.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    id: i64,
    topic: String,
    key: String,
    payload: Vec<u8>,
    /// When the row was inserted, as this process's clock has it: its relay delay counts from here.
    inserted: Instant,
}

/// The outbox rows one open transaction wrote. Commit the transaction, then give them to
/// [`RelayHandle::committed`]; dropped without that (a rollback), they are forgotten, as are
/// their rows.
#[derive(Debug, Default)]
#[must_use = "hand the staged rows to the relay once the transaction committed"]
pub struct Staged(Vec<Row>);

impl Staged {
    /// Writes one outgoing message inside `tx` and stages it.
    pub async fn enqueue(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<(), SagaError> {
        let key = envelope.order_id.to_string();
        let payload = envelope.encode();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (message_id, topic, msg_key, payload, created_at) \
             VALUES ($1, $2, $3, $4, clock_timestamp()) RETURNING id",
        )
        .bind(envelope.message_id)
        .bind(topic)
        .bind(&key)
        .bind(&payload)
        .fetch_one(&mut **tx)
        .await
        .map_err(SagaError::db("inserting an outbox row"))?;
        self.0.push(Row {
            id,
            topic: topic.to_string(),
            key,
            payload,
            inserted: Instant::now(),
        });
        Ok(())
    }
}

/// Where committed rows go to be published at once. Cheap to clone. A handle whose relay is gone
/// (or a default one, in tests without a relay) drops what it is given: the rows are committed,
/// so a relay's sweep publishes them.
#[derive(Clone, Debug)]
pub struct RelayHandle {
    publisher: mpsc::UnboundedSender<Handoff>,
    turns: Arc<[tokio::sync::Mutex<()>]>,
}

/// Stripes of [`RelayHandle::turn`]: with a few dozen orders in flight, two rarely share one.
const TURN_STRIPES: usize = 256;

impl RelayHandle {
    fn new(publisher: mpsc::UnboundedSender<Handoff>) -> RelayHandle {
        RelayHandle {
            publisher,
            turns: (0..TURN_STRIPES).map(|_| Default::default()).collect(),
        }
    }

    /// One order's turn to write and hand over rows in this process: hold it from before the
    /// transaction begins until its rows are handed over. Two transactions of one order are
    /// serialized by their row locks, but without this the later one could hand its rows over
    /// first (the earlier one's task not yet run since its commit) and a compensation could
    /// overtake the step it compensates. Taken before any database lock, so it adds no deadlock.
    pub async fn turn(&self, order: OrderId) -> tokio::sync::MutexGuard<'_, ()> {
        self.turns[self.stripe(order)].lock().await
    }

    /// The turns of several orders, for one transaction that writes for all of them. Taken in
    /// stripe order, each stripe once, and all before the transaction begins: whoever waits for a
    /// turn holds no database lock, and two takers of several never wait for each other in a
    /// circle.
    pub async fn turns(
        &self,
        orders: impl IntoIterator<Item = OrderId>,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = orders.into_iter().map(|o| self.stripe(o)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            held.push(self.turns[stripe].lock().await);
        }
        held
    }

    fn stripe(&self, order: OrderId) -> usize {
        (order.0.as_u128() % self.turns.len() as u128) as usize
    }
}

impl Default for RelayHandle {
    fn default() -> Self {
        RelayHandle::new(mpsc::unbounded_channel().0)
    }
}

/// Rows for the relay, and how they came.
#[derive(Debug)]
pub(crate) struct Handoff {
    rows: Vec<Row>,
    swept: bool,
}

impl RelayHandle {
    /// Call after the transaction that staged `staged` committed.
    pub fn committed(&self, staged: Staged) {
        if !staged.0.is_empty() {
            let _ = self.publisher.send(Handoff {
                rows: staged.0,
                swept: false,
            });
        }
    }
}

/// The relay's knobs.
#[derive(Clone, Debug)]
pub struct RelayPolicy {
    /// Most rows one sweep reads.
    pub batch: i64,
    /// How often the sweep looks for rows no hand-off brought.
    pub poll_interval: Duration,
    /// The sweep leaves rows younger than this alone: their hand-off is on its way.
    pub sweep_grace: Duration,
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
            sweep_grace: Duration::from_secs(1),
            publish_twice: false,
            retention: Duration::from_secs(600),
        }
    }
}

/// Ids of the rows the relay has taken on, from send until marked published: whoever claims a
/// row first (hand-off or sweep) sends it, and the sweep leaves claimed rows alone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Claims(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>);

impl Claims {
    /// True if `id` was not claimed before.
    fn claim(&self, id: i64) -> bool {
        self.0.lock().expect("claims lock").insert(id)
    }

    fn release(&self, ids: &[i64]) {
        let mut claimed = self.0.lock().expect("claims lock");
        for id in ids {
            claimed.remove(id);
        }
    }

    fn snapshot(&self) -> Vec<i64> {
        self.0
            .lock()
            .expect("claims lock")
            .iter()
            .copied()
            .collect()
    }
}
