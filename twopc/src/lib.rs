//! Two-phase commit (DESIGN §3): a presumed-abort coordinator with a durable, group-committed
//! decision log, and participants that hold PostgreSQL prepared transactions (and their row
//! locks) from Prepare to the decision, asking the coordinator when left in doubt.

pub mod branch;
pub mod coordinator;
pub mod deployment;
pub mod error;
pub mod participant;
pub mod protocol;
