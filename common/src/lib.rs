//! What the two protocols share: the domain, seeded data, storage, the client API, the local
//! environment, Kafka client settings and the invariant checker.

pub mod admission;
pub mod api;
pub mod checker;
pub mod datagen;
pub mod domain;
pub mod env;
pub mod failpoint;
pub mod fault_proxy;
pub mod kafka_clients;
pub mod metrics;
pub mod net;
pub mod operations;
pub mod process;
pub mod retry;
pub mod semantic_locks;
pub mod storage;
