//! Faults (DESIGN §5): the schedule a scenario declares, the proxies on every link of a run,
//! and the injector that carries the schedule out while the load runs.

pub mod injector;
pub mod network;
pub mod random;
pub mod remote;
pub mod schedule;
pub mod settle;
pub mod toxiproxy;
