//! Metric names every saga process records (microseconds), in one place so that the load
//! generator and the tests read the same names.

use std::time::Duration;

/// Client: PlaceOrder receipt → durable acceptance (saga row or PENDING order committed).
pub const ACCEPT: &str = "saga.accept";
/// Client: PlaceOrder receipt → final outcome known to the server.
pub const END_TO_END: &str = "saga.end_to_end";
/// Outbox insert → broker acknowledged the publish.
pub const RELAY_DELAY: &str = "relay.delay";
/// Relay produce → consumer received (the produce time travels in a header).
pub const KAFKA_HOP: &str = "kafka.hop";
/// Counter: 1 once the process's consumer holds its first partition assignment.
pub const CONSUMER_ASSIGNED: &str = common::kafka_clients::CONSUMER_ASSIGNED;
/// Counter: consumers the watchdog found stalled and replaced with a new client.
pub const CONSUMER_REPLACED: &str = "kafka.consumer_replaced";
/// One handler's local transaction, begin → commit: the rows it locks are held this long. (The
/// orchestrator records it once per transition; transitions batched in one transaction each
/// record that transaction's time, from taking their turns to the commit.)
pub const HANDLER_TX: &str = "handler.tx";
/// Counters: the orchestrator's transition transactions, and the transitions they carried (a
/// lane's backlog of replies shares one transaction; their ratio is the mean batch).
pub const TRANSITION_TRANSACTIONS: &str = "saga.transition_transactions";
pub const TRANSITIONS: &str = "saga.transitions";

/// A non-negative microsecond count as a duration (clock skew between a database and a process
/// can make tiny negative ages).
pub fn micros(value: i64) -> Duration {
    Duration::from_micros(value.max(0) as u64)
}
