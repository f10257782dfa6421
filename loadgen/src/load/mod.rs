//! Putting load on a protocol: the schedule of arrivals and its timer, the open and closed loops
//! over a pool of connections, the workload's orders, and the per-second interval histograms
//! every answer is recorded in.

pub mod closed;
pub mod connections;
pub mod intervals;
pub mod open;
pub mod recorder;
pub mod timer;
pub mod workload;
