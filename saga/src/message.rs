//! The one message schema of both modes: a versioned JSON envelope keyed by order id. Commands and
//! replies drive the orchestrated saga; events drive the choreographed one. The produce time is a
//! Kafka header set by the relay (the payload is fixed when the outbox row is written).

use common::domain::{Order, OrderId, RejectReason};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Bumped on any incompatible change; a consumer refuses versions it does not know.
pub const SCHEMA_VERSION: u16 = 2;

/// Header carrying the moment the relay handed the message to the producer (Unix µs).
pub const PRODUCED_AT_HEADER: &str = "txlab-produced-us";

/// What travels on every topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    /// Unique per message; consumers dedupe on it (`processed_messages`).
    pub message_id: Uuid,
    /// The Kafka key: one order's messages share a partition and keep their order.
    pub order_id: OrderId,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Body {
    Command(Command),
    Reply(Reply),
    Event(Event),
}

/// One step of the orchestrated saga, as named in commands, replies and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    CreateOrder,
    ReserveStock,
    ChargePayment,
    CommitStock,
    ConfirmOrder,
    RefundPayment,
    ReleaseStock,
    CancelOrder,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateOrder => "create_order",
            Step::ReserveStock => "reserve_stock",
            Step::ChargePayment => "charge_payment",
            Step::CommitStock => "commit_stock",
            Step::ConfirmOrder => "confirm_order",
            Step::RefundPayment => "refund_payment",
            Step::ReleaseStock => "release_stock",
            Step::CancelOrder => "cancel_order",
        }
    }

    /// The metric name of the step's duration (command sent → reply handled).
    pub fn metric(self) -> &'static str {
        match self {
            Step::CreateOrder => "step.create_order",
            Step::ReserveStock => "step.reserve_stock",
            Step::ChargePayment => "step.charge_payment",
            Step::CommitStock => "step.commit_stock",
            Step::ConfirmOrder => "step.confirm_order",
            Step::RefundPayment => "step.refund_payment",
            Step::ReleaseStock => "step.release_stock",
            Step::CancelOrder => "step.cancel_order",
        }
    }

    /// The service that performs it.
    pub fn service(self) -> crate::ServiceKind {
        use crate::ServiceKind::*;
        match self {
            Step::CreateOrder | Step::ConfirmOrder | Step::CancelOrder => Order,
            Step::ReserveStock | Step::CommitStock | Step::ReleaseStock => Inventory,
            Step::ChargePayment | Step::RefundPayment => Payment,
        }
    }
}

/// Orchestrator → service. Each is idempotent by business key as well as by message id, because
/// a timed-out step is re-sent under a new message id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    CreateOrder {
        order: Order,
    },
    ReserveStock {
        order: Order,
    },
    ChargePayment {
        order: Order,
    },
    CommitStock,
    ConfirmOrder,
    RefundPayment,
    ReleaseStock,
    /// `reason` is written into `orders.reason` (`rejected:<why>` or `aborted:<why>`).
    CancelOrder {
        reason: String,
    },
}

impl Command {
    pub fn step(&self) -> Step {
        match self {
            Command::CreateOrder { .. } => Step::CreateOrder,
            Command::ReserveStock { .. } => Step::ReserveStock,
            Command::ChargePayment { .. } => Step::ChargePayment,
            Command::CommitStock => Step::CommitStock,
            Command::ConfirmOrder => Step::ConfirmOrder,
            Command::RefundPayment => Step::RefundPayment,
            Command::ReleaseStock => Step::ReleaseStock,
            Command::CancelOrder { .. } => Step::CancelOrder,
        }
    }
}

/// Service → orchestrator: how a step ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub step: Step,
    pub result: StepResult,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StepResult {
    /// Applied (or found already applied).
    Done,
    /// A business rule refused it; nothing was changed.
    Rejected { reason: RejectReason },
}

/// Choreography: what happened, for whoever reacts to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Order service: order PENDING. Inventory reserves.
    OrderCreated { order: Order },
    /// Inventory: stock RESERVED. Payment charges.
    StockReserved { order: Order },
    /// Inventory: nothing reserved. Order cancels.
    StockRejected { reason: RejectReason },
    /// Payment: captured. Inventory commits its reservation.
    PaymentCaptured,
    /// Payment: nothing charged. Inventory releases.
    PaymentRejected { reason: RejectReason },
    /// Inventory: reservation COMMITTED. Order confirms.
    StockCommitted,
    /// Inventory: reservation RELEASED (or nothing was reserved) after a refused or voided
    /// payment. Order cancels with `reason` (`rejected:<why>` or `aborted:<why>`).
    StockReleased { reason: String },
    /// Order service: the saga outlived its deadline. Payment, which owns the pivot, decides:
    /// voided if nothing was charged, else the charge stands and the saga goes forward.
    CancelRequested { reason: String },
    /// Payment: nothing was charged and nothing will be (the void refuses a later charge).
    /// Inventory releases.
    PaymentVoided { reason: String },
    /// Order service: final. Payment ends the charge's semantic lock.
    OrderConfirmed,
    /// Order service: final, cancelled.
    OrderCancelled { reason: String },
}

impl Envelope {
    pub fn new(order_id: OrderId, body: Body) -> Envelope {
        Envelope {
            version: SCHEMA_VERSION,
            message_id: Uuid::new_v4(),
            order_id,
            body,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    /// Decodes and checks the version first, so a newer producer's message is refused by name.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeFailure> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u16,
        }
        let probe: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| DecodeFailure::Malformed(e.to_string()))?;
        if probe.version != SCHEMA_VERSION {
            return Err(DecodeFailure::Version(probe.version));
        }
        serde_json::from_slice(bytes).map_err(|e| DecodeFailure::Malformed(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFailure {
    Malformed(String),
    Version(u16),
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::domain::{Cents, CustomerId, OrderLine, Sku};

    #[test]
    fn envelopes_round_trip_and_refuse_other_versions() {
        let order = Order::new(
            OrderId::new_random(),
            CustomerId(3),
            vec![OrderLine {
                sku: Sku(1),
                qty: 2,
                unit_price: Cents(10),
            }],
        )
        .unwrap();
        let env = Envelope::new(
            order.id,
            Body::Command(Command::ReserveStock {
                order: order.clone(),
            }),
        );
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        let reply = Envelope::new(
            order.id,
            Body::Reply(Reply {
                step: Step::ChargePayment,
                result: StepResult::Rejected {
                    reason: RejectReason::InsufficientFunds,
                },
            }),
        );
        assert_eq!(Envelope::decode(&reply.encode()).unwrap(), reply);
        let mut future = env.clone();
        future.version = SCHEMA_VERSION + 1;
        assert_eq!(
            Envelope::decode(&future.encode()),
            Err(DecodeFailure::Version(SCHEMA_VERSION + 1))
        );
        assert!(matches!(
            Envelope::decode(b"{}"),
            Err(DecodeFailure::Malformed(_))
        ));
    }
}
