//! Integration tests against the real thing: a lab-provisioned PostgreSQL cluster and Apache
//! Kafka broker. One test binary, so the shared environment starts once.

mod checker;
mod environment;
mod kafka_round_trip;
mod operations;
mod storage;
