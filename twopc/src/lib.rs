//! Two-phase commit (DESIGN §3): a presumed-abort coordinator with a durable decision log, and
//! participants holding PostgreSQL prepared transactions. Built by the 2PC issue; this crate holds
//! nothing yet.
