//! Two-phase commit (DESIGN §3): a presumed-abort coordinator with a durable, group-committed
//! decision log, and participants that hold PostgreSQL prepared transactions (and their row
//! locks) from Prepare to the decision, asking the coordinator when left in doubt.
//!
//! The coordinator's protocol logic (`coordinator::committer`) reaches participants and its log
//! only through `coordinator::ports`, so its traces run in memory; each transaction's phase has
//! one owner (`coordinator::transactions`), each branch's state too (`participant::prepared`).
//! `deployment` starts the processes on this machine.

pub mod branch;
pub mod coordinator;
pub mod deployment;
pub mod error;
pub mod participant;
pub mod protocol;
