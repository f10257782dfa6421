//! The orchestrator's storage as the engine sees it: start a saga with its first command, apply
//! transitions in one local transaction (for each: dedupe the trigger, lock the saga, save the
//! state the engine decided, put its command in the outbox), read a saga, list overdue ones. PostgreSQL
//! implements it ([`PgSagaLog`]); the engine's protocol traces implement it in memory.

use super::store::{self, Locked};
use crate::error::SagaError;
use crate::machine::Saga;
use crate::message::Envelope;
use crate::outbox::{RelayHandle, Staged};
use common::domain::OrderId;
use futures::future::BoxFuture;
use sqlx::PgPool;
use std::time::Duration;

/// A message to publish through the outbox.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub envelope: Envelope,
}

/// What the engine decided for one locked saga.
// One lives for one transition; boxing the saga would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Nothing changes: a reply the saga moved past, or a timeout a reply beat.
    Stale,
    /// The saga moves on: save `next` (with its next step deadline) and send `send`.
    Advance {
        next: Saga,
        timeout: Option<Duration>,
        send: Option<Outgoing>,
    },
}

/// What one transition came to.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Applied {
    /// The trigger was processed before (only its dedupe record was checked).
    Duplicate,
    /// No saga with this order id.
    UnknownSaga,
    /// The engine's verdict, committed, with the saga as it was locked.
    Decided { locked: Locked, verdict: Verdict },
}

/// The engine's decision for a locked saga; pure, so that it runs inside the transaction.
pub type Decide<'a> = &'a (dyn Fn(&Locked) -> Verdict + Send + Sync);

/// One transition asked of the log.
pub struct Transition<'a> {
    pub order: OrderId,
    /// The reply that triggered it, recorded as processed (None for a timeout).
    pub dedupe: Option<&'a Envelope>,
    pub decide: Decide<'a>,
}

pub trait SagaLog: Send + Sync + 'static {
    /// Inserts a new saga and its first command in one transaction; false if it existed.
    fn start<'a>(
        &'a self,
        saga: &'a Saga,
        first: Outgoing,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, SagaError>>;

    /// Transitions in one transaction, in order, one [`Applied`] each: a transition's `dedupe`
    /// is recorded as processed, its saga locked, `decide` asked, and the verdict saved with its
    /// command. All or nothing: `Err` means none of them took effect. Several at once (a lane's
    /// backlog) share one commit; a later one sees what an earlier one of the same saga saved.
    fn transitions<'a>(
        &'a self,
        transitions: &'a [Transition<'a>],
    ) -> BoxFuture<'a, Result<Vec<Applied>, SagaError>>;

    /// The saga as stored, without locking (a repeated `PlaceOrder`).
    fn load(&self, order: OrderId) -> BoxFuture<'_, Result<Option<Saga>, SagaError>>;

    /// Non-terminal sagas whose step deadline passed, oldest first.
    fn due(&self, limit: i64) -> BoxFuture<'_, Result<Vec<OrderId>, SagaError>>;
}

/// The saga log in the orchestrator's PostgreSQL database (`sagas`, `outbox`,
/// `processed_messages`).
#[derive(Clone)]
pub struct PgSagaLog {
    pub pool: PgPool,
    /// Where committed commands go to be published at once.
    pub relay: RelayHandle,
}

impl PgSagaLog {
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, SagaError> {
        self.pool
            .begin()
            .await
            .map_err(SagaError::db("beginning a transaction"))
    }
}

impl SagaLog for PgSagaLog {
    fn start<'a>(
        &'a self,
        saga: &'a Saga,
        first: Outgoing,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<bool, SagaError>> {
        Box::pin(async move {
            let _turn = self.relay.turn(saga.order.id).await;
            let mut tx = self.begin().await?;
            if !store::insert(&mut tx, saga, timeout).await? {
                return Ok(false);
            }
            let mut staged = Staged::default();
            staged
                .enqueue(&mut tx, &first.topic, &first.envelope)
                .await?;
            tx.commit()
                .await
                .map_err(SagaError::db("committing a new saga"))?;
            self.relay.committed(staged);
            Ok(true)
        })
    }

    fn transitions<'a>(
        &'a self,
        transitions: &'a [Transition<'a>],
    ) -> BoxFuture<'a, Result<Vec<Applied>, SagaError>> {
        Box::pin(async move {
            let _turns = self.relay.turns(transitions.iter().map(|t| t.order)).await;
            let mut tx = self.begin().await?;
            let mut staged = Staged::default();
            let mut applied = Vec::with_capacity(transitions.len());
            for transition in transitions {
                applied.push(apply(&mut tx, transition, &mut staged).await?);
            }
            tx.commit()
                .await
                .map_err(SagaError::db("committing saga transitions"))?;
            self.relay.committed(staged);
            Ok(applied)
        })
    }

    fn load(&self, order: OrderId) -> BoxFuture<'_, Result<Option<Saga>, SagaError>> {
        Box::pin(store::load(&self.pool, order))
    }

    fn due(&self, limit: i64) -> BoxFuture<'_, Result<Vec<OrderId>, SagaError>> {
        Box::pin(store::due(&self.pool, limit))
    }
}

/// One transition inside the caller's transaction; its command, if any, joins `staged`.
async fn apply(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    transition: &Transition<'_>,
    staged: &mut Staged,
) -> Result<Applied, SagaError> {
    let order = transition.order;
    let locked = match transition.dedupe {
        Some(envelope) => match store::dedupe_and_lock(tx, order, envelope.message_id).await? {
            store::Deduped::Duplicate => return Ok(Applied::Duplicate),
            store::Deduped::First(locked) => locked,
        },
        None => store::lock(tx, order).await?,
    };
    let Some(locked) = locked else {
        return Ok(Applied::UnknownSaga);
    };
    let verdict = (transition.decide)(&locked);
    if let Verdict::Advance {
        next,
        timeout,
        send,
    } = &verdict
    {
        store::save(tx, next, *timeout).await?;
        if let Some(out) = send {
            staged.enqueue(tx, &out.topic, &out.envelope).await?;
        }
    }
    Ok(Applied::Decided { locked, verdict })
}
