//! The inventory service's state changes. A reservation takes units out of `available` at once
//! (RESERVED: the semantic lock), becomes COMMITTED when the saga confirms, or RELEASED with its
//! units put back when it compensates. Stock rows are locked in sku order, so two reservations
//! never wait on each other in a cycle.

use crate::error::SagaError;
use common::domain::{Order, OrderId, RejectReason};
use sqlx::{Postgres, Transaction};

/// Reserves every line, or nothing. Already reserved (a re-sent command) counts as done.
pub async fn reserve(
    tx: &mut Transaction<'_, Postgres>,
    order: &Order,
) -> Result<Result<(), RejectReason>, SagaError> {
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE order_id = $1")
        .bind(order.id.0)
        .fetch_one(&mut **tx)
        .await
        .map_err(SagaError::db("looking for reservations"))?;
    if existing > 0 {
        return Ok(Ok(()));
    }
    let lines = order.lines_in_lock_order();
    let skus: Vec<i32> = lines.iter().map(|l| l.sku.0).collect();
    let rows: Vec<(i32, i32, i64)> = sqlx::query_as(
        "SELECT sku, available, price_cents FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(&skus)
    .fetch_all(&mut **tx)
    .await
    .map_err(SagaError::db("locking stock"))?;
    for line in &lines {
        let Some((_, available, price)) = rows.iter().find(|(sku, _, _)| *sku == line.sku.0) else {
            return Ok(Err(RejectReason::UnknownSku));
        };
        if *price != line.unit_price.0 {
            return Ok(Err(RejectReason::PriceMismatch));
        }
        if *available < line.qty {
            return Ok(Err(RejectReason::OutOfStock));
        }
    }
    let qtys: Vec<i32> = lines.iter().map(|l| l.qty).collect();
    sqlx::query(
        "UPDATE stock SET available = available - l.qty FROM UNNEST($1::int[], $2::int[]) AS l(sku, qty) WHERE stock.sku = l.sku",
    )
    .bind(&skus)
    .bind(&qtys)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("taking stock"))?;
    sqlx::query(
        "INSERT INTO reservations (order_id, sku, qty, status) SELECT $1, * , 'RESERVED' FROM UNNEST($2::int[], $3::int[])",
    )
    .bind(order.id.0)
    .bind(&skus)
    .bind(&qtys)
    .execute(&mut **tx)
    .await
    .map_err(SagaError::db("inserting reservations"))?;
    Ok(Ok(()))
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
