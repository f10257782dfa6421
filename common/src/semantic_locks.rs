//! The sagas' semantic locks, read from the services' own rows after a run, one way for both
//! saga modes: a lock runs from the start of the local transaction that took it to the start of
//! the one that made it final or compensated it (both are the rows' `now()` stamps, on the
//! server's clock).
//!
//! - *reservation*: stock RESERVED by a saga step → the reservation COMMITTED or RELEASED;
//! - *charge*: money CAPTURED by a saga step → the order CONFIRMED (the saga is final, the charge
//!   can no longer be refunded) or the charge REFUNDED.
//!
//! Measured inside the processes instead, the end of a charge's lock had to be seen by whichever
//! process learns of it first, which differs between orchestration and choreography (and cost
//! one more query per order in one of them). Under 2PC these rows are written final at once;
//! its locks are row locks, measured by the participants.

use crate::domain::OrderId;
use crate::metrics::{new_histogram, record};
use crate::storage::Databases;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use uuid::Uuid;

/// Histogram names, as the reports and `locks.svg` show them.
pub const RESERVATION: &str = "semantic_lock.reservation";
pub const CHARGE: &str = "semantic_lock.charge";

/// Both kinds of semantic lock of a set of orders, in microseconds.
pub struct SemanticLocks {
    pub reservation: Histogram<u64>,
    pub charge: Histogram<u64>,
}

/// The locks of `orders` that ended (locks still held are left out: the checker reports those
/// sagas as unfinished).
pub async fn of_orders(dbs: &Databases, orders: &[OrderId]) -> Result<SemanticLocks, sqlx::Error> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.0).collect();
    let mut locks = SemanticLocks {
        reservation: new_histogram(),
        charge: new_histogram(),
    };
    // One reservation row per line, all taken and ended by the same two transactions.
    let reserved: Vec<i64> = sqlx::query_scalar(
        "SELECT MAX((EXTRACT(EPOCH FROM updated_at - created_at) * 1000000)::bigint) \
         FROM reservations WHERE order_id = ANY($1) AND status <> 'RESERVED' GROUP BY order_id",
    )
    .bind(&ids)
    .fetch_all(&dbs.inventory)
    .await?;
    for us in reserved {
        record_us(&mut locks.reservation, us);
    }
    let confirmed: HashMap<Uuid, i64> = sqlx::query_as(
        "SELECT id, (EXTRACT(EPOCH FROM updated_at) * 1000000)::bigint FROM orders \
         WHERE id = ANY($1) AND status = 'CONFIRMED'",
    )
    .bind(&ids)
    .fetch_all(&dbs.orders)
    .await?
    .into_iter()
    .collect();
    let charges: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(
        "SELECT order_id, status, (EXTRACT(EPOCH FROM created_at) * 1000000)::bigint, \
         (EXTRACT(EPOCH FROM updated_at) * 1000000)::bigint FROM payments WHERE order_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&dbs.payments)
    .await?;
    for (order, status, taken, updated) in charges {
        let ended = match status.as_str() {
            "REFUNDED" => Some(updated),
            _ => confirmed.get(&order).copied(),
        };
        if let Some(ended) = ended {
            record_us(&mut locks.charge, ended - taken);
        }
    }
    Ok(locks)
}

fn record_us(histogram: &mut Histogram<u64>, us: i64) {
    // Stamps of one server's clock: never negative, but never recorded as huge if they were.
    record(
        histogram,
        std::time::Duration::from_micros(us.max(0) as u64),
    );
}
