//! The order service's state changes: create an order PENDING, and record its final status.
//! Both are idempotent by order id, because an orchestrator re-sends timed-out steps.

use crate::error::SagaError;
use common::domain::{Order, OrderId, OrderStatus};
use common::operations::{self, Applied, LockClock};
use sqlx::{Postgres, Transaction};

/// Inserts the order and its lines PENDING (`common::operations::create_order`, as a 2PC branch
/// does, but PENDING); false if it already existed (nothing changed).
pub async fn create(tx: &mut Transaction<'_, Postgres>, order: &Order) -> Result<bool, SagaError> {
    let applied =
        operations::create_order(tx, order, OrderStatus::Pending, &mut LockClock::default())
            .await
            .map_err(SagaError::db("inserting an order"))?;
    Ok(applied == Applied::Done)
}

/// Moves a PENDING order to its final status; false if it was not PENDING (already final, or
/// never created — a cancel that overtook nothing).
pub async fn finish(
    tx: &mut Transaction<'_, Postgres>,
    order: OrderId,
    status: OrderStatus,
    reason: Option<&str>,
) -> Result<bool, SagaError> {
    debug_assert!(
        status != OrderStatus::Pending,
        "finish needs a final status"
    );
    let changed = sqlx::query(
        "UPDATE orders SET status = $2, reason = $3, updated_at = now() WHERE id = $1 AND status = 'PENDING'",
    )
    .bind(order.0)
    .bind(status.as_str())
    .bind(reason)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("finishing an order"))?
    .rows_affected();
    Ok(changed == 1)
}

/// The order's status and reason, if it exists.
pub async fn status(
    pool: &sqlx::PgPool,
    order: OrderId,
) -> Result<Option<(OrderStatus, Option<String>)>, SagaError> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT status, reason FROM orders WHERE id = $1")
            .bind(order.0)
            .fetch_optional(pool)
            .await
            .map_err(SagaError::db("reading an order"))?;
    Ok(row.and_then(|(s, r)| OrderStatus::parse(&s).map(|s| (s, r))))
}
