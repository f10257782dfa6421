//! The order as it travels in Prepare, and each service's part of it: the domain operation a
//! participant runs inside its branch transaction.

use common::api::twopc_pb as pb;
use common::domain::{
    Cents, CustomerId, Order, OrderId, OrderLine, OrderStatus, RejectReason, ReservationStatus, Sku,
};
use common::operations::{self, Applied};
use sqlx::PgConnection;

pub use common::operations::LockClock;

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

/// Runs this service's part of `order` in the open transaction `tx`, with the domain operations
/// the saga steps use too (`common::operations`). `Ok(Some(reason))` is a business refusal and
/// nothing was written; the caller rolls back. `clock` learns when the locks were granted.
pub async fn apply(
    service: ServiceKind,
    tx: &mut PgConnection,
    order: &Order,
    clock: &mut LockClock,
) -> Result<Option<RejectReason>, sqlx::Error> {
    let applied = match service {
        // Written CONFIRMED: visible only if the global transaction commits, and a global abort
        // leaves no trace (presumed abort).
        ServiceKind::Order => {
            operations::create_order(tx, order, OrderStatus::Confirmed, clock).await?
        }
        ServiceKind::Payment => operations::charge(tx, order, clock).await?,
        ServiceKind::Inventory => {
            operations::reserve(tx, order, ReservationStatus::Committed, clock).await?
        }
    };
    Ok(match applied {
        Applied::Done => None,
        // Under 2PC an order is placed once: its rows existing already make this a replay.
        Applied::AlreadyDone => Some(RejectReason::DuplicateOrder),
        Applied::Refused(reason) => Some(reason),
    })
}
