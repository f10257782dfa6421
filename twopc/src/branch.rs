//! The order as it travels in Prepare, and each service's part of it: the SQL a participant runs
//! inside its branch transaction, taking row locks in sorted key order.

use common::api::twopc_pb as pb;
use common::domain::{Cents, CustomerId, Order, OrderId, OrderLine, RejectReason, Sku};
use sqlx::PgConnection;
use std::time::Instant;

pub use common::domain::ServiceKind;

pub fn to_branch(order: &Order) -> pb::Branch {
    pb::Branch {
        order_id: order.id.to_string(),
        customer_id: order.customer.0 as u32,
        lines: order
            .lines()
            .iter()
            .map(|l| pb::BranchLine {
                sku: l.sku.0 as u32,
                qty: l.qty as u32,
                unit_price_cents: l.unit_price.0,
            })
            .collect(),
        amount_cents: order.amount().0,
    }
}

/// Rebuilds and re-validates the order; the amount must match the lines.
pub fn from_branch(branch: &pb::Branch) -> Result<Order, String> {
    let id = uuid::Uuid::parse_str(&branch.order_id)
        .map_err(|_| format!("branch.order_id {:?} is not a UUID", branch.order_id))?;
    let lines = branch
        .lines
        .iter()
        .map(|l| OrderLine {
            sku: Sku(l.sku as i32),
            qty: l.qty as i32,
            unit_price: Cents(l.unit_price_cents),
        })
        .collect();
    let order = Order::new(OrderId(id), CustomerId(branch.customer_id as i32), lines)
        .map_err(|e| format!("branch: {e}"))?;
    if order.amount().0 != branch.amount_cents {
        return Err(format!(
            "branch.amount_cents {} differs from the lines' {}",
            branch.amount_cents,
            order.amount().0
        ));
    }
    Ok(order)
}

/// When a branch asked for its row locks and when they were granted: lock wait runs from the
/// first request to the last grant, lock hold from the first grant (they differ when an
/// inventory branch locks several rows one after another).
#[derive(Clone, Copy, Debug, Default)]
pub struct LockClock {
    pub requested: Option<Instant>,
    pub first: Option<Instant>,
    pub all: Option<Instant>,
}

impl LockClock {
    /// The branch is about to ask for its first row lock.
    pub fn requesting(&mut self) {
        self.requested.get_or_insert_with(Instant::now);
    }

    /// One more row lock was granted.
    pub fn granted(&mut self) {
        self.first.get_or_insert_with(Instant::now);
    }

    /// Every row lock the branch needs is held.
    pub fn all_granted(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.all = Some(now);
    }
}

/// Runs this service's part of `order` in the open transaction `tx`: locks first (sorted keys),
/// then checks the business rule, then writes. `Ok(Some(reason))` is a business refusal; the
/// caller rolls back. `clock` learns when the locks were granted.
pub async fn apply(
    service: ServiceKind,
    tx: &mut PgConnection,
    order: &Order,
    clock: &mut LockClock,
) -> Result<Option<RejectReason>, sqlx::Error> {
    match service {
        ServiceKind::Order => create_order(tx, order, clock).await,
        ServiceKind::Payment => charge(tx, order, clock).await,
        ServiceKind::Inventory => reserve(tx, order, clock).await,
    }
}

/// The order row is written CONFIRMED: under 2PC it becomes visible only if the global
/// transaction commits, and a global abort leaves no trace (presumed abort).
async fn create_order(
    tx: &mut PgConnection,
    order: &Order,
    clock: &mut LockClock,
) -> Result<Option<RejectReason>, sqlx::Error> {
    clock.requesting();
    let inserted = sqlx::query(
        "INSERT INTO orders (id, customer_id, amount_cents, status) VALUES ($1, $2, $3, 'CONFIRMED') ON CONFLICT (id) DO NOTHING",
    )
    .bind(order.id.0)
    .bind(order.customer.0)
    .bind(order.amount().0)
    .execute(&mut *tx)
    .await?;
    clock.all_granted();
    if inserted.rows_affected() == 0 {
        return Ok(Some(RejectReason::DuplicateOrder));
    }
    let skus: Vec<i32> = order.lines().iter().map(|l| l.sku.0).collect();
    let qtys: Vec<i32> = order.lines().iter().map(|l| l.qty).collect();
    let prices: Vec<i64> = order.lines().iter().map(|l| l.unit_price.0).collect();
    sqlx::query(
        "INSERT INTO order_lines (order_id, sku, qty, unit_price_cents)
         SELECT $1, * FROM UNNEST($2::int[], $3::int[], $4::bigint[])",
    )
    .bind(order.id.0)
    .bind(skus)
    .bind(qtys)
    .bind(prices)
    .execute(&mut *tx)
    .await?;
    Ok(None)
}

async fn charge(
    tx: &mut PgConnection,
    order: &Order,
    clock: &mut LockClock,
) -> Result<Option<RejectReason>, sqlx::Error> {
    clock.requesting();
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT balance_cents FROM wallets WHERE customer_id = $1 FOR UPDATE")
            .bind(order.customer.0)
            .fetch_optional(&mut *tx)
            .await?;
    clock.all_granted();
    let Some(balance) = balance else {
        return Ok(Some(RejectReason::UnknownCustomer));
    };
    if balance < order.amount().0 {
        return Ok(Some(RejectReason::InsufficientFunds));
    }
    sqlx::query("UPDATE wallets SET balance_cents = balance_cents - $2 WHERE customer_id = $1")
        .bind(order.customer.0)
        .bind(order.amount().0)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO payments (order_id, customer_id, amount_cents, status) VALUES ($1, $2, $3, 'CAPTURED')
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order.id.0)
    .bind(order.customer.0)
    .bind(order.amount().0)
    .execute(&mut *tx)
    .await?;
    Ok((inserted.rows_affected() == 0).then_some(RejectReason::DuplicateOrder))
}

async fn reserve(
    tx: &mut PgConnection,
    order: &Order,
    clock: &mut LockClock,
) -> Result<Option<RejectReason>, sqlx::Error> {
    let lines = order.lines_in_lock_order();
    // One row at a time in sku order: two orders can never hold each other's next lock.
    let mut rows = Vec::with_capacity(lines.len());
    clock.requesting();
    for line in &lines {
        let row: Option<(i32, i64)> =
            sqlx::query_as("SELECT available, price_cents FROM stock WHERE sku = $1 FOR UPDATE")
                .bind(line.sku.0)
                .fetch_optional(&mut *tx)
                .await?;
        clock.granted();
        rows.push(row);
    }
    clock.all_granted();
    for (line, row) in lines.iter().zip(&rows) {
        let Some((available, price)) = row else {
            return Ok(Some(RejectReason::UnknownSku));
        };
        if *price != line.unit_price.0 {
            return Ok(Some(RejectReason::PriceMismatch));
        }
        if *available < line.qty {
            return Ok(Some(RejectReason::OutOfStock));
        }
    }
    let skus: Vec<i32> = lines.iter().map(|l| l.sku.0).collect();
    let qtys: Vec<i32> = lines.iter().map(|l| l.qty).collect();
    sqlx::query(
        "UPDATE stock s SET available = s.available - t.qty FROM UNNEST($1::int[], $2::int[]) AS t(sku, qty) WHERE s.sku = t.sku",
    )
    .bind(&skus)
    .bind(&qtys)
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO reservations (order_id, sku, qty, status) SELECT $1, t.sku, t.qty, 'COMMITTED'
         FROM UNNEST($2::int[], $3::int[]) AS t(sku, qty) ON CONFLICT DO NOTHING",
    )
    .bind(order.id.0)
    .bind(&skus)
    .bind(&qtys)
    .execute(&mut *tx)
    .await?;
    Ok((inserted.rows_affected() != lines.len() as u64).then_some(RejectReason::DuplicateOrder))
}
