//! The inventory service's state changes. A reservation takes units out of `available` at once
//! (RESERVED: the semantic lock), becomes COMMITTED when the saga confirms, or RELEASED with its
//! units put back when it compensates. Stock rows are locked in sku order, so two reservations
//! never wait on each other in a cycle.

use crate::error::SagaError;
use common::domain::{Order, OrderId, RejectReason, ReservationStatus};
use common::operations::{self, Applied, LockClock};
use sqlx::{Postgres, Transaction};

/// Reserves every line, or nothing (`common::operations::reserve`, as a 2PC branch does, but
/// RESERVED). Already reserved (a re-sent command) counts as done.
pub async fn reserve(
    tx: &mut Transaction<'_, Postgres>,
    order: &Order,
) -> Result<Result<(), RejectReason>, SagaError> {
    let applied = operations::reserve(
        tx,
        order,
        ReservationStatus::Reserved,
        &mut LockClock::default(),
    )
    .await
    .map_err(SagaError::db("reserving stock"))?;
    Ok(match applied {
        Applied::Done | Applied::AlreadyDone => Ok(()),
        Applied::Refused(reason) => Err(reason),
    })
}

/// RESERVED → COMMITTED. Returns how long the reservation was held, if one was still RESERVED.
pub async fn commit(tx: &mut Transaction<'_, Postgres>, order: OrderId) -> Result<(), SagaError> {
    sqlx::query(
        "UPDATE reservations SET status = 'COMMITTED', updated_at = now() \
         WHERE order_id = $1 AND status = 'RESERVED'",
    )
    .bind(order.0)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("committing reservations"))?;
    Ok(())
}

/// RESERVED → RELEASED, units back to `available` (locked in sku order). A no-op when nothing is
/// reserved (the reserve was refused, or never arrived).
pub async fn release(tx: &mut Transaction<'_, Postgres>, order: OrderId) -> Result<(), SagaError> {
    let mut released: Vec<(i32, i32)> = sqlx::query_as(
        "UPDATE reservations SET status = 'RELEASED', updated_at = now() \
         WHERE order_id = $1 AND status = 'RESERVED' \
         RETURNING sku, qty",
    )
    .bind(order.0)
    .fetch_all(&mut **tx)
    .await
    .map_err(SagaError::db("releasing reservations"))?;
    if released.is_empty() {
        return Ok(());
    }
    released.sort_by_key(|(sku, _)| *sku);
    let skus: Vec<i32> = released.iter().map(|r| r.0).collect();
    let qtys: Vec<i32> = released.iter().map(|r| r.1).collect();
    sqlx::query("SELECT sku FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE")
        .bind(&skus)
        .execute(&mut **tx)
        .await
        .map_err(SagaError::db("locking stock"))?;
    sqlx::query(
        "UPDATE stock SET available = available + l.qty FROM UNNEST($1::int[], $2::int[]) AS l(sku, qty) WHERE stock.sku = l.sku",
    )
    .bind(&skus)
    .bind(&qtys)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("returning stock"))?;
    Ok(())
}
