//! Sagas over Kafka (DESIGN §3): orchestrated and choreographed, with a transactional outbox and
//! idempotent consumers. Built by the saga issue; this crate holds nothing yet.
