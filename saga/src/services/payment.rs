//! The payment service's state changes. A charge debits the wallet and records the payment
//! CAPTURED at once (the charge's semantic lock until the saga is final); a refund marks it
//! REFUNDED and credits the wallet back. Both are idempotent by order id. In choreography a saga
//! past its deadline is cancelled here, at the pivot: voided if nothing was charged.

use crate::error::SagaError;
use common::domain::{Order, OrderId, RejectReason};
use common::operations::{self, Applied, LockClock};
use sqlx::{Postgres, Transaction};

/// Charges the order's amount, or refuses (`common::operations::charge`, as a 2PC branch does).
/// An existing payment (a re-sent command) counts as done.
pub async fn charge(
    tx: &mut Transaction<'_, Postgres>,
    order: &Order,
) -> Result<Result<(), RejectReason>, SagaError> {
    let applied = operations::charge(tx, order, &mut LockClock::default())
        .await
        .map_err(SagaError::db("charging a payment"))?;
    Ok(match applied {
        Applied::Done | Applied::AlreadyDone => Ok(()),
        Applied::Refused(reason) => Err(reason),
    })
}

/// CAPTURED → REFUNDED and the amount back to the wallet; a no-op without a captured payment.
pub async fn refund(tx: &mut Transaction<'_, Postgres>, order: OrderId) -> Result<(), SagaError> {
    let row: Option<(i32, i64)> = sqlx::query_as(
        "UPDATE payments SET status = 'REFUNDED', updated_at = now() WHERE order_id = $1 AND status = 'CAPTURED' \
         RETURNING customer_id, amount_cents",
    )
    .bind(order.0)
    .fetch_optional(&mut **tx)
    .await
    .map_err(SagaError::db("refunding a payment"))?;
    let Some((customer, amount)) = row else {
        return Ok(());
    };
    sqlx::query("UPDATE wallets SET balance_cents = balance_cents + $2 WHERE customer_id = $1")
        .bind(customer)
        .bind(amount)
        .execute(&mut **tx)
        .await
        .map_err(SagaError::db("crediting a wallet"))?;
    Ok(())
}

/// Where a choreographed saga stood at its pivot when its cancel was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pivot {
    /// Nothing was charged; the void (now or earlier) refuses any later charge.
    Voided,
    /// The charge happened first: it stands and the saga goes forward.
    Charged,
}

/// Cancels the order's charge if it has not happened. Serialised with [`is_voided`] on the
/// order's advisory lock, so a charge and a void of one order never both win, whatever the
/// delivery order.
pub async fn void(tx: &mut Transaction<'_, Postgres>, order: OrderId) -> Result<Pivot, SagaError> {
    lock_order(tx, order).await?;
    let paid: Option<i32> = sqlx::query_scalar("SELECT 1 FROM payments WHERE order_id = $1")
        .bind(order.0)
        .fetch_optional(&mut **tx)
        .await
        .map_err(SagaError::db("looking for a payment"))?;
    if paid.is_some() {
        return Ok(Pivot::Charged);
    }
    sqlx::query("INSERT INTO voided_payments (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(order.0)
        .execute(&mut **tx)
        .await
        .map_err(SagaError::db("voiding a payment"))?;
    Ok(Pivot::Voided)
}

/// Whether the order was voided; call before [`charge`] in the same transaction, which then
/// holds the order's lock until it commits.
pub async fn is_voided(
    tx: &mut Transaction<'_, Postgres>,
    order: OrderId,
) -> Result<bool, SagaError> {
    lock_order(tx, order).await?;
    let voided: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM voided_payments WHERE order_id = $1")
            .bind(order.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(SagaError::db("looking for a void"))?;
    Ok(voided.is_some())
}

async fn lock_order(tx: &mut Transaction<'_, Postgres>, order: OrderId) -> Result<(), SagaError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(order.0)
        .execute(&mut **tx)
        .await
        .map_err(SagaError::db("locking an order's payment"))?;
    Ok(())
}
