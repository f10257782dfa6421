//! The client API (`OrderApi.PlaceOrder`) generated from `proto/order_api.proto`, and the checked
//! conversion from a request into a domain [`Order`].

use crate::domain::{Cents, CustomerId, InvalidOrder, Order, OrderId, OrderLine, Sku};
use std::time::{SystemTime, UNIX_EPOCH};

#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("txlab.order.v1");
}

/// The 2PC wire protocol between coordinator and participants (used by the `twopc` crate only;
/// generated here so that every protocol file is compiled in one place).
#[allow(clippy::all)]
pub mod twopc_pb {
    tonic::include_proto!("txlab.twopc.v1");
}

pub use pb::order_api_client::OrderApiClient;
pub use pb::order_api_server::{OrderApi, OrderApiServer};

impl TryFrom<&pb::PlaceOrderRequest> for Order {
    type Error = InvalidOrder;

    fn try_from(req: &pb::PlaceOrderRequest) -> Result<Order, InvalidOrder> {
        let id = uuid::Uuid::parse_str(&req.order_id)
            .map_err(|_| InvalidOrder::BadOrderId(req.order_id.clone()))?;
        let customer = i32::try_from(req.customer_id)
            .ok()
            .filter(|c| *c > 0)
            .ok_or(InvalidOrder::BadCustomer(req.customer_id))?;
        let mut lines = Vec::with_capacity(req.lines.len());
        for (index, line) in req.lines.iter().enumerate() {
            let sku = i32::try_from(line.sku).map_err(|_| InvalidOrder::BadSku {
                index,
                sku: line.sku,
            })?;
            let qty = i32::try_from(line.qty).map_err(|_| InvalidOrder::BadQuantity {
                index,
                qty: line.qty,
            })?;
            lines.push(OrderLine {
                sku: Sku(sku),
                qty,
                unit_price: Cents(line.unit_price_cents),
            });
        }
        Order::new(OrderId(id), CustomerId(customer), lines)
    }
}

impl From<&Order> for pb::PlaceOrderRequest {
    fn from(order: &Order) -> Self {
        pb::PlaceOrderRequest {
            order_id: order.id.to_string(),
            customer_id: order.customer.0 as u32,
            lines: order
                .lines()
                .iter()
                .map(|l| pb::OrderLine {
                    sku: l.sku.0 as u32,
                    qty: l.qty as u32,
                    unit_price_cents: l.unit_price.0,
                })
                .collect(),
            deadline_ms: 0,
        }
    }
}

impl From<crate::domain::OutcomeKind> for pb::OutcomeKind {
    fn from(kind: crate::domain::OutcomeKind) -> Self {
        use crate::domain::OutcomeKind as K;
        match kind {
            K::Committed => pb::OutcomeKind::Committed,
            K::Rejected => pb::OutcomeKind::Rejected,
            K::Aborted => pb::OutcomeKind::Aborted,
            K::Undecided => pb::OutcomeKind::Undecided,
        }
    }
}

/// Microseconds since the Unix epoch: the unit of every timestamp in the API.
pub fn unix_micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_bad_fields_are_named() {
        let order = Order::new(
            OrderId::new_random(),
            CustomerId(7),
            vec![OrderLine {
                sku: Sku(2),
                qty: 3,
                unit_price: Cents(250),
            }],
        )
        .unwrap();
        let req = pb::PlaceOrderRequest::from(&order);
        assert_eq!(Order::try_from(&req).unwrap(), order);

        let mut bad = req.clone();
        bad.order_id = "not-a-uuid".into();
        assert!(Order::try_from(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("order_id:"));
        let mut bad = req.clone();
        bad.customer_id = 0;
        assert!(Order::try_from(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("customer_id:"));
        let mut bad = req;
        bad.lines[0].qty = u32::MAX;
        assert!(Order::try_from(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("lines[0].qty"));
    }
}
