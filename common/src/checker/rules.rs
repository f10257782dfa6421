//! The per-order atomicity rules, judged from every row the services hold about one order:
//! pure functions of the evidence.

use super::{CheckReport, Leftover, OrderEvidence, Violation};
use crate::domain::{OrderStatus, PaymentStatus, ReservationStatus};
use std::collections::{BTreeMap, HashMap};

/// What the per-order rules need beyond the order's own rows.
pub(super) struct Rules {
    /// The decision log is in use: a CONFIRMED order must have a COMMIT in it.
    pub two_phase: bool,
    /// The stock's prices (sku → cents), which never change during a run.
    pub prices: HashMap<i32, i64>,
}

/// The rules that hold for any order, whatever its status: its amount is what its lines add
/// up to, a payment is the order's amount from the order's own customer, and a logged COMMIT
/// means CONFIRMED.
fn consistency_problem(order: &OrderEvidence, status: Option<OrderStatus>) -> Option<String> {
    if let Some((_, amount)) = &order.order {
        let sum: i64 = order
            .lines
            .iter()
            .map(|(sku, qty)| i64::from(*qty) * order.unit_prices.get(sku).copied().unwrap_or(0))
            .sum();
        if amount.0 != sum {
            return Some("order amount differs from the sum of its lines".into());
        }
        if let Some((_, paid)) = &order.payment {
            if order.payer != order.customer {
                return Some("payment taken from another customer than the order's".into());
            }
            if paid != amount {
                return Some("payment differs from the order's amount".into());
            }
        }
    }
    match status {
        _ if !order.commit_logged => None,
        Some(OrderStatus::Confirmed | OrderStatus::Pending) => None,
        Some(OrderStatus::Cancelled) => Some("COMMIT logged but the order is CANCELLED".into()),
        None => Some("COMMIT logged for an order that does not exist".into()),
    }
}

/// The atomicity rules for one order, given every row the services hold about it.
pub(super) fn judge_order(order: OrderEvidence, rules: &Rules, report: &mut CheckReport) {
    let mut unknown = |table: &str, status: &str| {
        report.violations.push(Violation::UnknownStatus {
            table: table.to_string(),
            key: order.order_id.map(|id| id.to_string()).unwrap_or_default(),
            status: status.to_string(),
        })
    };
    let status = match &order.order {
        Some((text, _)) => match OrderStatus::parse(text) {
            Some(s) => Some(s),
            None => return unknown("orders", text),
        },
        None => None,
    };
    let payment = match &order.payment {
        Some((text, _)) => match PaymentStatus::parse(text) {
            Some(s) => Some(s),
            None => return unknown("payments", text),
        },
        None => None,
    };
    let mut reservation_statuses = Vec::new();
    for (_, text) in order.reservations.values() {
        match ReservationStatus::parse(text) {
            Some(s) => reservation_statuses.push(s),
            None => return unknown("reservations", text),
        }
    }
    let counts = &mut report.counts;
    match status {
        Some(OrderStatus::Confirmed) => counts.orders_confirmed += 1,
        Some(OrderStatus::Cancelled) => counts.orders_cancelled += 1,
        Some(OrderStatus::Pending) => counts.orders_pending += 1,
        None => {}
    }
    match payment {
        Some(PaymentStatus::Captured) => counts.payments_captured += 1,
        Some(PaymentStatus::Refunded) => counts.payments_refunded += 1,
        None => {}
    }
    for s in &reservation_statuses {
        match s {
            ReservationStatus::Committed => counts.reservations_committed += 1,
            ReservationStatus::Released => counts.reservations_released += 1,
            ReservationStatus::Reserved => {}
        }
    }

    let captured = payment == Some(PaymentStatus::Captured);
    let any_held = reservation_statuses
        .iter()
        .any(|s| *s != ReservationStatus::Released);
    let off_price = order
        .unit_prices
        .iter()
        .any(|(sku, price)| rules.prices.get(sku) != Some(price));
    if status == Some(OrderStatus::Pending) {
        report.leftovers.push(Leftover::PendingOrder {
            order: order.clone(),
        });
    }
    let by_status = || match status {
        Some(OrderStatus::Confirmed) => {
            let reserved: BTreeMap<i32, i32> = order
                .reservations
                .iter()
                .map(|(sku, (qty, _))| (*sku, *qty))
                .collect();
            if !captured {
                Some("CONFIRMED order without a captured payment".to_string())
            } else if reserved != order.lines {
                Some("CONFIRMED order whose reservations differ from its lines".to_string())
            } else if reservation_statuses
                .iter()
                .any(|s| *s != ReservationStatus::Committed)
            {
                Some("CONFIRMED order with stock not committed".to_string())
            } else if off_price {
                Some("CONFIRMED order at a price other than the stock's".to_string())
            } else if rules.two_phase && !order.commit_logged {
                Some("CONFIRMED under 2PC without a COMMIT in the decision log".to_string())
            } else {
                None
            }
        }
        Some(OrderStatus::Cancelled) if captured => {
            Some("CANCELLED order whose payment is still captured".to_string())
        }
        Some(OrderStatus::Cancelled) if any_held => {
            Some("CANCELLED order whose stock is still held".to_string())
        }
        Some(OrderStatus::Cancelled) | Some(OrderStatus::Pending) => None,
        None if captured || any_held => {
            Some("payment or stock taken for an order that does not exist".to_string())
        }
        None => None,
    };
    if let Some(problem) = consistency_problem(&order, status).or_else(by_status) {
        report
            .violations
            .push(Violation::Atomicity { order, problem });
    }
}
