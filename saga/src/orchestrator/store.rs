//! The orchestrator's durable saga log (`sagas` table). Durability contract: a saga's new state
//! and the command it sends are committed in one transaction (the command via the outbox), so a
//! restarted orchestrator finds every saga where it left it, with its pending command either
//! published or still in the outbox; `deadline_at` tells the timer when to re-send.

use crate::error::SagaError;
use crate::machine::{Ending, Saga, SagaState};
use common::domain::{Order, OrderId, RejectReason};
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

/// Inserts a new saga; false if one with this order id exists (a repeated `PlaceOrder`).
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    saga: &Saga,
    timeout: Duration,
) -> Result<bool, SagaError> {
    let order_json = serde_json::to_value(&saga.order).expect("an order always serializes");
    let inserted = sqlx::query(
        "INSERT INTO sagas (order_id, state, terminal, order_json, attempts, deadline_at) \
         VALUES ($1, $2, false, $3, $4, clock_timestamp() + $5 * interval '1 microsecond') \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(saga.order.id.0)
    .bind(saga.state.as_str())
    .bind(order_json)
    .bind(saga.attempts as i32)
    .bind(timeout.as_micros() as f64)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("inserting a saga"))?
    .rows_affected();
    Ok(inserted == 1)
}

/// A saga locked for a transition.
#[derive(Clone, Debug)]
pub struct Locked {
    pub saga: Saga,
    /// How long it has been in its current state (µs): the step's duration when a reply ends it.
    pub age_us: i64,
    /// Whether its step deadline has passed (checked under the lock, so a reply cannot race it).
    pub overdue: bool,
}

/// The columns a locked saga is read with.
macro_rules! locked_columns {
    () => {
        "state, order_json, attempts, reason, \
         (EXTRACT(EPOCH FROM clock_timestamp() - updated_at) * 1000000)::bigint, \
         COALESCE(deadline_at < clock_timestamp(), false)"
    };
}

type LockedRow = (String, serde_json::Value, i32, Option<String>, i64, bool);

/// [`dedupe_and_lock`]'s one row: first delivery, then the locked columns (all NULL when the
/// message is a duplicate or there is no saga).
type DedupedRow = (
    bool,
    Option<String>,
    Option<serde_json::Value>,
    Option<i32>,
    Option<String>,
    Option<i64>,
    Option<bool>,
);

/// Locks a saga for a transition.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    order: OrderId,
) -> Result<Option<Locked>, SagaError> {
    let row: Option<LockedRow> = sqlx::query_as(concat!(
        "SELECT ",
        locked_columns!(),
        " FROM sagas WHERE order_id = $1 FOR UPDATE"
    ))
    .bind(order.0)
    .fetch_optional(&mut **tx)
    .await
    .map_err(SagaError::db("locking a saga"))?;
    row.map(|row| locked(order, row)).transpose()
}

/// What [`dedupe_and_lock`] found.
pub enum Deduped {
    /// The message was processed before; nothing was locked.
    Duplicate,
    /// First delivery, recorded; the saga locked, if there is one.
    First(Option<Locked>),
}

/// Records `message` as processed and, if that was its first delivery, locks the saga: one
/// statement, where a separate dedupe insert and lock would cost two round trips.
pub async fn dedupe_and_lock(
    tx: &mut Transaction<'_, Postgres>,
    order: OrderId,
    message: uuid::Uuid,
) -> Result<Deduped, SagaError> {
    let row: DedupedRow = sqlx::query_as(concat!(
        "WITH first AS ( \
             INSERT INTO processed_messages (message_id) VALUES ($2) \
             ON CONFLICT DO NOTHING RETURNING true AS first) \
         SELECT EXISTS (SELECT 1 FROM first), saga.* FROM (SELECT 1) AS one \
         LEFT JOIN ( \
             SELECT ",
        locked_columns!(),
        " FROM sagas \
             WHERE order_id = $1 AND EXISTS (SELECT 1 FROM first) FOR UPDATE) AS saga ON true"
    ))
    .bind(order.0)
    .bind(message)
    .fetch_one(&mut **tx)
    .await
    .map_err(SagaError::db("recording a reply and locking its saga"))?;
    let (first, state, json, attempts, reason, age_us, overdue) = row;
    if !first {
        return Ok(Deduped::Duplicate);
    }
    let (Some(state), Some(json), Some(attempts), Some(age_us), Some(overdue)) =
        (state, json, attempts, age_us, overdue)
    else {
        return Ok(Deduped::First(None));
    };
    Ok(Deduped::First(Some(locked(
        order,
        (state, json, attempts, reason, age_us, overdue),
    )?)))
}

fn locked(order: OrderId, row: LockedRow) -> Result<Locked, SagaError> {
    let (state, order_json, attempts, reason, age_us, overdue) = row;
    Ok(Locked {
        saga: decode(order, &state, order_json, attempts, reason)?,
        age_us,
        overdue,
    })
}

/// Writes the saga's new state; `timeout` sets the next deadline (none once terminal).
pub async fn save(
    tx: &mut Transaction<'_, Postgres>,
    saga: &Saga,
    timeout: Option<Duration>,
) -> Result<(), SagaError> {
    sqlx::query(
        "UPDATE sagas SET state = $2, terminal = $3, attempts = $4, reason = $5, updated_at = clock_timestamp(), \
                deadline_at = CASE WHEN $6::float8 IS NULL THEN NULL \
                                   ELSE clock_timestamp() + $6 * interval '1 microsecond' END \
         WHERE order_id = $1",
    )
    .bind(saga.order.id.0)
    .bind(saga.state.as_str())
    .bind(saga.state.is_terminal())
    .bind(saga.attempts as i32)
    .bind(saga.ending.as_ref().map(Ending::to_text))
    .bind(timeout.map(|t| t.as_micros() as f64))
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("saving a saga"))?;
    Ok(())
}

/// The saga as stored, without locking: for a repeated `PlaceOrder`.
pub async fn load(pool: &PgPool, order: OrderId) -> Result<Option<Saga>, SagaError> {
    let row: Option<(String, serde_json::Value, i32, Option<String>)> =
        sqlx::query_as("SELECT state, order_json, attempts, reason FROM sagas WHERE order_id = $1")
            .bind(order.0)
            .fetch_optional(pool)
            .await
            .map_err(SagaError::db("reading a saga"))?;
    row.map(|(state, json, attempts, reason)| decode(order, &state, json, attempts, reason))
        .transpose()
}

/// Non-terminal sagas whose step deadline passed, oldest first.
pub async fn due(pool: &PgPool, limit: i64) -> Result<Vec<OrderId>, SagaError> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT order_id FROM sagas WHERE NOT terminal AND deadline_at < clock_timestamp() ORDER BY deadline_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(SagaError::db("finding overdue sagas"))?;
    Ok(ids.into_iter().map(OrderId).collect())
}

/// How many sagas are not terminal (logged at start-up: the work recovery resumes).
pub async fn count_open(pool: &PgPool) -> Result<i64, SagaError> {
    sqlx::query_scalar("SELECT count(*) FROM sagas WHERE NOT terminal")
        .fetch_one(pool)
        .await
        .map_err(SagaError::db("counting open sagas"))
}

fn decode(
    id: OrderId,
    state: &str,
    order_json: serde_json::Value,
    attempts: i32,
    reason: Option<String>,
) -> Result<Saga, SagaError> {
    let state = SagaState::parse(state).ok_or_else(|| SagaError::UnknownSagaState {
        order_id: id.to_string(),
        state: state.to_string(),
    })?;
    let order: Order =
        serde_json::from_value(order_json).map_err(|source| SagaError::BadStoredOrder {
            order_id: id.to_string(),
            source,
        })?;
    Ok(Saga {
        order,
        state,
        attempts: attempts.max(1) as u32,
        ending: reason.as_deref().map(parse_ending),
    })
}

fn parse_ending(text: &str) -> Ending {
    match RejectReason::from_text(text) {
        Some(reason) => Ending::Rejected(reason),
        // Unknown reasons stay visible as they were stored, never guessed into a rejection.
        None if text.starts_with(common::domain::REJECTED_PREFIX) => Ending::Aborted(text.into()),
        None => Ending::Aborted(text.strip_prefix("aborted:").unwrap_or(text).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_reasons_round_trip() {
        for ending in [
            Ending::Rejected(RejectReason::OutOfStock),
            Ending::Rejected(RejectReason::InsufficientFunds),
            Ending::Aborted("timeout:charge_payment".into()),
        ] {
            assert_eq!(parse_ending(&ending.to_text()), ending);
        }
        // A reason this build does not know stays visible rather than becoming a rejection.
        assert_eq!(
            parse_ending("rejected:alien"),
            Ending::Aborted("rejected:alien".into())
        );
    }
}
