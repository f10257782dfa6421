//! The domain's local operations, written once for both protocols: a 2PC branch and a saga step
//! run the same statements, in the same lock order, with the same round trips, inside whatever
//! transaction the caller holds open, so that a latency difference between the protocols is the
//! protocols', not their SQL's. Each checks first whether it was applied already (a replayed
//! order, a re-sent step), then locks (sorted keys), then checks the business rule, then writes.
//! A refusal writes nothing; the caller decides what the open transaction does next.

use crate::domain::{Order, OrderLine, OrderStatus, RejectReason, ReservationStatus};
use sqlx::PgConnection;
use std::time::Instant;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// This order's rows existed already; nothing was changed.
    AlreadyDone,
    /// A business rule refused; nothing was changed.
    Refused(RejectReason),
}

/// When an operation asked for its row locks and when it held them all: lock wait runs from the
/// request to the grant, lock hold from the grant (2PC reports both; sagas ignore them).
#[derive(Clone, Copy, Debug, Default)]
pub struct LockClock {
    pub requested: Option<Instant>,
    pub granted: Option<Instant>,
}

impl LockClock {
    fn requesting(&mut self) {
        self.requested.get_or_insert_with(Instant::now);
    }

    fn all_granted(&mut self) {
        self.granted = Some(Instant::now());
    }
}

/// Inserts the order and its lines with `status` (2PC: CONFIRMED, visible only if the global
/// transaction commits; sagas: PENDING).
pub async fn create_order(
    conn: &mut PgConnection,
    order: &Order,
    status: OrderStatus,
    clock: &mut LockClock,
) -> Result<Applied, sqlx::Error> {
    let (skus, qtys, prices) = columns(order.lines());
    clock.requesting();
    // One statement, one round trip: the lines go in only with a new order row (an order has at
    // least one line, so no line inserted means the order existed).
    let lines = sqlx::query(
        "WITH created AS ( \
             INSERT INTO orders (id, customer_id, amount_cents, status) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING RETURNING id) \
         INSERT INTO order_lines (order_id, sku, qty, unit_price_cents) \
         SELECT created.id, l.* FROM created, UNNEST($5::int[], $6::int[], $7::bigint[]) AS l",
    )
    .bind(order.id.0)
    .bind(order.customer.0)
    .bind(order.amount().0)
    .bind(status.as_str())
    .bind(skus)
    .bind(qtys)
    .bind(prices)
    .execute(&mut *conn)
    .await?;
    clock.all_granted();
    if lines.rows_affected() == 0 {
        return Ok(Applied::AlreadyDone);
    }
    Ok(Applied::Done)
}

/// Debits the order's amount from its customer's wallet and records the payment CAPTURED.
pub async fn charge(
    conn: &mut PgConnection,
    order: &Order,
    clock: &mut LockClock,
) -> Result<Applied, sqlx::Error> {
    let amount = order.amount().0;
    let unlocked = *clock;
    clock.requesting();
    // One statement, one round trip: whether the order was charged before, the wallet locked,
    // and — only if the balance covers the amount — the debit and the payment row. A plain
    // INSERT: a concurrent twin of this order fails here on the key and rolls back. (PostgreSQL
    // runs a data-modifying WITH whether or not the query reads it.)
    let (charged_before, balance): (bool, Option<i64>) = sqlx::query_as(
        "WITH prior AS (SELECT 1 FROM payments WHERE order_id = $1), \
         wallet AS ( \
             SELECT balance_cents FROM wallets \
             WHERE customer_id = $2 AND NOT EXISTS (SELECT 1 FROM prior) FOR UPDATE), \
         debit AS ( \
             UPDATE wallets SET balance_cents = balance_cents - $3 \
             WHERE customer_id = $2 AND (SELECT balance_cents FROM wallet) >= $3 RETURNING 1), \
         paid AS ( \
             INSERT INTO payments (order_id, customer_id, amount_cents, status) \
             SELECT $1, $2, $3, 'CAPTURED' FROM debit) \
         SELECT EXISTS (SELECT 1 FROM prior), (SELECT balance_cents FROM wallet)",
    )
    .bind(order.id.0)
    .bind(order.customer.0)
    .bind(amount)
    .fetch_one(&mut *conn)
    .await?;
    clock.all_granted();
    if charged_before {
        *clock = unlocked; // a replay locks nothing
        return Ok(Applied::AlreadyDone);
    }
    match balance {
        None => Ok(Applied::Refused(RejectReason::UnknownCustomer)),
        Some(b) if b < amount => Ok(Applied::Refused(RejectReason::InsufficientFunds)),
        Some(_) => Ok(Applied::Done),
    }
}

/// Order lines as the array parameters the statements unnest: skus, quantities, unit prices.
fn columns(lines: &[OrderLine]) -> (Vec<i32>, Vec<i32>, Vec<i64>) {
    (
        lines.iter().map(|l| l.sku.0).collect(),
        lines.iter().map(|l| l.qty).collect(),
        lines.iter().map(|l| l.unit_price.0).collect(),
    )
}

/// What the reserve statement returns: reserved before, every line fits, the locked stock rows
/// as columns (sku, available, price).
type ReserveRow = (
    bool,
    Option<bool>,
    Option<Vec<i32>>,
    Option<Vec<i32>>,
    Option<Vec<i64>>,
);

/// Takes every line's units out of `available` and records the reservations with `status`
/// (2PC: COMMITTED, final with the global commit; sagas: RESERVED, the semantic lock), or
/// nothing. Stock rows are locked in one statement in sku order, so two orders never wait on
/// each other in a cycle.
pub async fn reserve(
    conn: &mut PgConnection,
    order: &Order,
    status: ReservationStatus,
    clock: &mut LockClock,
) -> Result<Applied, sqlx::Error> {
    let lines = order.lines_in_lock_order();
    let (skus, qtys, prices) = columns(&lines);
    let unlocked = *clock;
    clock.requesting();
    // One statement, one round trip: whether the order reserved before, its stock rows locked
    // (in sku order), and — only if every line fits (known sku, same price, enough units) — the
    // units taken and the reservations recorded. The locked rows come back for the refusal's
    // reason. (An order's skus are distinct: `Order::new` refuses duplicates.)
    let (reserved_before, fits, stock): (bool, bool, Vec<(i32, i32, i64)>) = {
        let row: ReserveRow = sqlx::query_as(
            "WITH prior AS (SELECT 1 FROM reservations WHERE order_id = $1 LIMIT 1), \
                 locked AS ( \
                     SELECT sku, available, price_cents FROM stock \
                     WHERE sku = ANY($2) AND NOT EXISTS (SELECT 1 FROM prior) \
                     ORDER BY sku FOR UPDATE), \
                 fits AS ( \
                     SELECT count(*) = cardinality($2::int[]) AS ok FROM locked \
                     JOIN UNNEST($2::int[], $3::int[], $5::bigint[]) AS l(sku, qty, price) \
                       ON locked.sku = l.sku \
                     WHERE locked.price_cents = l.price AND locked.available >= l.qty), \
                 taken AS ( \
                     UPDATE stock SET available = available - l.qty \
                     FROM UNNEST($2::int[], $3::int[]) AS l(sku, qty) \
                     WHERE stock.sku = l.sku AND (SELECT ok FROM fits) RETURNING 1), \
                 reserved AS ( \
                     INSERT INTO reservations (order_id, sku, qty, status) \
                     SELECT $1, l.sku, l.qty, $4 FROM UNNEST($2::int[], $3::int[]) AS l(sku, qty) \
                     WHERE (SELECT ok FROM fits) RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM prior), (SELECT ok FROM fits), \
                        array_agg(sku), array_agg(available), array_agg(price_cents) FROM locked",
        )
        .bind(order.id.0)
        .bind(&skus)
        .bind(&qtys)
        .bind(status.as_str())
        .bind(&prices)
        .fetch_one(&mut *conn)
        .await?;
        let (before, fits, found, available, price) = row;
        let stock = found
            .unwrap_or_default()
            .into_iter()
            .zip(available.unwrap_or_default())
            .zip(price.unwrap_or_default())
            .map(|((sku, available), price)| (sku, available, price))
            .collect();
        (before, fits.unwrap_or(false), stock)
    };
    clock.all_granted();
    if reserved_before {
        *clock = unlocked; // a replay locks nothing
        return Ok(Applied::AlreadyDone);
    }
    if fits {
        return Ok(Applied::Done);
    }
    for line in &lines {
        let Some((_, available, price)) = stock.iter().find(|(sku, _, _)| *sku == line.sku.0)
        else {
            return Ok(Applied::Refused(RejectReason::UnknownSku));
        };
        if *price != line.unit_price.0 {
            return Ok(Applied::Refused(RejectReason::PriceMismatch));
        }
        if *available < line.qty {
            return Ok(Applied::Refused(RejectReason::OutOfStock));
        }
    }
    Err(sqlx::Error::Protocol(
        "reserve: the stock did not fit, yet every line checks out".into(),
    ))
}
