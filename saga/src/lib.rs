//! Sagas over Kafka (DESIGN §3): one order/payment/inventory flow run either by an orchestrator
//! that keeps each saga's state in its own database, or by choreography where each service reacts
//! to the previous step's events. Every handler applies its business change, a processed-message
//! record and its outgoing messages in one local transaction (transactional outbox), so at-least-once
//! delivery yields exactly-once effects.
//!
//! [`machine`] holds each saga's states and transitions (one owner, unit-tested without a
//! broker); [`orchestrator`] and [`services`] apply them; [`outbox`] relays what handlers wrote;
//! [`consumer`] delivers in partition order and replaces a client that stopped consuming.

pub mod cli;
pub mod config;
pub mod consumer;
pub mod deployment;
pub mod error;
pub mod machine;
pub mod message;
pub mod orchestrator;
pub mod outbox;
pub mod server;
pub mod services;
pub mod telemetry;
pub mod waiters;

pub use config::{Mode, ServiceKind};
pub use error::SagaError;
