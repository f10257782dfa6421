//! The order/payment/inventory domain shared by both protocols. Money is integer cents and
//! quantities are integers: no floats ever reach state.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// An order's identity, chosen by the client so that retries are idempotent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderId(pub Uuid);

impl OrderId {
    pub fn new_random() -> Self {
        OrderId(Uuid::new_v4())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A customer, who owns exactly one wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CustomerId(pub i32);

/// A stock-keeping unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sku(pub i32);

/// An amount of money in integer cents.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Cents(pub i64);

impl Cents {
    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}¢", self.0)
    }
}

/// One line of an order: `qty` units of `sku` at the quoted `unit_price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub qty: i32,
    pub unit_price: Cents,
}

/// A validated order: at least one line, positive quantities and prices, no sku twice, and an
/// amount that fits in cents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub customer: CustomerId,
    lines: Vec<OrderLine>,
    amount: Cents,
}

/// Why an order was refused before any protocol saw it. Each names the API field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrder {
    #[error("order_id: {0:?} is not a UUID")]
    BadOrderId(String),
    #[error("customer_id: must be positive and below 2^31, got {0}")]
    BadCustomer(u32),
    #[error("lines: an order needs at least one line")]
    NoLines,
    #[error("lines[{index}].sku: must be positive and below 2^31, got {sku}")]
    BadSku { index: usize, sku: u32 },
    #[error("lines[{index}].qty: must be between 1 and 1000000, got {qty}")]
    BadQuantity { index: usize, qty: u32 },
    #[error("lines[{index}].unit_price_cents: must be positive, got {price}")]
    BadPrice { index: usize, price: i64 },
    #[error("lines[{index}].sku: sku {sku} appears twice; merge the lines")]
    DuplicateSku { index: usize, sku: i32 },
    #[error("lines: the amount overflows 64-bit cents")]
    AmountOverflow,
}

impl Order {
    /// Builds an order, checking every rule; lines keep the client's order.
    pub fn new(
        id: OrderId,
        customer: CustomerId,
        lines: Vec<OrderLine>,
    ) -> Result<Order, InvalidOrder> {
        if lines.is_empty() {
            return Err(InvalidOrder::NoLines);
        }
        let mut amount = Cents(0);
        let mut seen = std::collections::HashSet::new();
        for (index, line) in lines.iter().enumerate() {
            if line.sku.0 <= 0 {
                return Err(InvalidOrder::BadSku {
                    index,
                    sku: line.sku.0 as u32,
                });
            }
            if !(1..=1_000_000).contains(&line.qty) {
                return Err(InvalidOrder::BadQuantity {
                    index,
                    qty: line.qty as u32,
                });
            }
            if line.unit_price.0 <= 0 {
                return Err(InvalidOrder::BadPrice {
                    index,
                    price: line.unit_price.0,
                });
            }
            if !seen.insert(line.sku) {
                return Err(InvalidOrder::DuplicateSku {
                    index,
                    sku: line.sku.0,
                });
            }
            let line_amount = line
                .unit_price
                .0
                .checked_mul(i64::from(line.qty))
                .ok_or(InvalidOrder::AmountOverflow)?;
            amount = amount
                .checked_add(Cents(line_amount))
                .ok_or(InvalidOrder::AmountOverflow)?;
        }
        Ok(Order {
            id,
            customer,
            lines,
            amount,
        })
    }

    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// Σ qty · unit price.
    pub fn amount(&self) -> Cents {
        self.amount
    }

    /// The lines sorted by sku: the order in which every participant takes its row locks, so that
    /// two concurrent orders can never wait on each other in a cycle.
    pub fn lines_in_lock_order(&self) -> Vec<OrderLine> {
        let mut lines = self.lines.clone();
        lines.sort_by_key(|l| l.sku);
        lines
    }
}

/// The three business services of the domain; each owns its own database. Both protocols run
/// one process per service.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Order,
    Payment,
    Inventory,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 3] = [
        ServiceKind::Order,
        ServiceKind::Payment,
        ServiceKind::Inventory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Order => "order",
            ServiceKind::Payment => "payment",
            ServiceKind::Inventory => "inventory",
        }
    }

    /// The database the service owns.
    pub fn store(self) -> crate::storage::Store {
        match self {
            ServiceKind::Order => crate::storage::Store::Orders,
            ServiceKind::Payment => crate::storage::Store::Payments,
            ServiceKind::Inventory => crate::storage::Store::Inventory,
        }
    }
}

/// What the client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutcomeKind {
    /// Every service applied its step.
    Committed,
    /// A business rule refused the order.
    Rejected,
    /// A system failure aborted it.
    Aborted,
    /// No outcome by the client's deadline.
    Undecided,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 4] = [
        OutcomeKind::Committed,
        OutcomeKind::Rejected,
        OutcomeKind::Aborted,
        OutcomeKind::Undecided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Committed => "COMMITTED",
            OutcomeKind::Rejected => "REJECTED",
            OutcomeKind::Aborted => "ABORTED",
            OutcomeKind::Undecided => "UNDECIDED",
        }
    }

    /// DESIGN §6: an order counts as available when the system gave a final business answer.
    pub fn is_available(self) -> bool {
        matches!(self, OutcomeKind::Committed | OutcomeKind::Rejected)
    }
}

/// Why a business rule refused an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    InsufficientFunds,
    OutOfStock,
    UnknownCustomer,
    UnknownSku,
    PriceMismatch,
    /// An order with this id exists already: a retried order is never applied twice.
    DuplicateOrder,
}

impl RejectReason {
    /// Every reason, so that text is parsed back against the one spelling of [`as_str`].
    ///
    /// [`as_str`]: RejectReason::as_str
    pub const ALL: [RejectReason; 6] = [
        RejectReason::InsufficientFunds,
        RejectReason::OutOfStock,
        RejectReason::UnknownCustomer,
        RejectReason::UnknownSku,
        RejectReason::PriceMismatch,
        RejectReason::DuplicateOrder,
    ];

    /// The reason spelled `text`, if this build knows it.
    pub fn parse(text: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// How a rejection reads in a client's answer and in stored reasons, under every protocol:
    /// `rejected:<reason>`.
    pub fn to_text(self) -> String {
        format!("{REJECTED_PREFIX}{}", self.as_str())
    }

    /// The reason of a `rejected:<reason>` text; `None` for any other text or an unknown reason.
    pub fn from_text(text: &str) -> Option<RejectReason> {
        text.strip_prefix(REJECTED_PREFIX)
            .and_then(RejectReason::parse)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InsufficientFunds => "insufficient_funds",
            RejectReason::OutOfStock => "out_of_stock",
            RejectReason::UnknownCustomer => "unknown_customer",
            RejectReason::UnknownSku => "unknown_sku",
            RejectReason::PriceMismatch => "price_mismatch",
            RejectReason::DuplicateOrder => "duplicate_order",
        }
    }
}

/// The prefix of a rejection's text (see [`RejectReason::to_text`]).
pub const REJECTED_PREFIX: &str = "rejected:";

/// Declares a status enum stored as text in PostgreSQL, with its exact spelling in one place.
macro_rules! db_status {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

db_status!(
    /// `orders.status`.
    OrderStatus {
        /// Created, outcome not yet known (saga in flight).
        Pending => "PENDING",
        /// Final: every step applied.
        Confirmed => "CONFIRMED",
        /// Final: nothing applied, or everything compensated.
        Cancelled => "CANCELLED",
    }
);

db_status!(
    /// `payments.status`.
    PaymentStatus {
        /// The amount left the wallet.
        Captured => "CAPTURED",
        /// The amount went back to the wallet (saga compensation).
        Refunded => "REFUNDED",
    }
);

db_status!(
    /// `reservations.status`.
    ReservationStatus {
        /// Stock taken while the saga is not final: the semantic lock.
        Reserved => "RESERVED",
        /// Stock taken for good.
        Committed => "COMMITTED",
        /// Stock given back (compensation).
        Released => "RELEASED",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: i32, qty: i32, price: i64) -> OrderLine {
        OrderLine {
            sku: Sku(sku),
            qty,
            unit_price: Cents(price),
        }
    }

    #[test]
    fn reject_reasons_round_trip_through_their_one_spelling() {
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::parse(reason.as_str()), Some(reason));
            assert_eq!(RejectReason::from_text(&reason.to_text()), Some(reason));
        }
        assert_eq!(RejectReason::parse("alien"), None);
        assert_eq!(RejectReason::from_text("rejected:alien"), None);
        assert_eq!(RejectReason::from_text("aborted:out_of_stock"), None);
    }

    #[test]
    fn amount_is_sum_of_lines() {
        let order = Order::new(
            OrderId::new_random(),
            CustomerId(1),
            vec![line(3, 2, 150), line(1, 1, 99)],
        )
        .unwrap();
        assert_eq!(order.amount(), Cents(399));
        let skus: Vec<i32> = order
            .lines_in_lock_order()
            .iter()
            .map(|l| l.sku.0)
            .collect();
        assert_eq!(skus, vec![1, 3]);
    }

    #[test]
    fn invalid_orders_name_the_field() {
        let id = OrderId::new_random();
        let err = Order::new(id, CustomerId(1), vec![]).unwrap_err();
        assert!(err.to_string().starts_with("lines:"), "{err}");
        let err = Order::new(id, CustomerId(1), vec![line(1, 1, 10), line(2, 0, 10)]).unwrap_err();
        assert_eq!(err, InvalidOrder::BadQuantity { index: 1, qty: 0 });
        assert!(err.to_string().starts_with("lines[1].qty"), "{err}");
        let err = Order::new(id, CustomerId(1), vec![line(1, 1, 10), line(1, 1, 10)]).unwrap_err();
        assert!(matches!(err, InvalidOrder::DuplicateSku { index: 1, .. }));
        let err =
            Order::new(id, CustomerId(1), vec![line(1, 1_000_000, i64::MAX / 2)]).unwrap_err();
        assert_eq!(err, InvalidOrder::AmountOverflow);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            ReservationStatus::parse("RESERVED"),
            Some(ReservationStatus::Reserved)
        );
        assert_eq!(PaymentStatus::parse("nope"), None);
    }
}
