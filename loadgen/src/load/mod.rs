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

use crate::scenario::{LoadMode, Scenario};
use closed::ClosedLoop;
use common::datagen::DataSet;
use connections::Connections;
use open::OpenLoop;
use recorder::Recorded;
use std::time::Duration;

/// The client's view of one load, whichever loop produced it.
pub struct Driven {
    pub recorded: Recorded,
    /// Open loop: the schedule is the offered load; closed loop offers what it achieves.
    pub open: bool,
    /// The measured span: the schedule's length (open loop) or first start to last answer.
    pub measured: Duration,
}

/// Puts the scenario's load (open or closed loop) on `connections` for `duration`; order ids
/// come from the stream `stream_base`.
pub async fn drive(
    connections: &Connections,
    scenario: &Scenario,
    data: &DataSet,
    duration: Duration,
    stream_base: u64,
) -> Driven {
    let workload = scenario.workload_spec();
    let deadline = Duration::from_millis(scenario.deadline_ms);
    match scenario.load.mode {
        LoadMode::Open => {
            let load = OpenLoop {
                rate: scenario.load.rate.unwrap_or(1.0),
                duration,
                arrivals: scenario.load.arrivals,
                max_in_flight: scenario.load.max_in_flight,
                deadline,
                seed: scenario.seed.wrapping_add(stream_base),
                stream_base,
                precise: false,
                surges: scenario.surges(),
            };
            let recorded = open::run(connections, data, &workload, &load).await;
            Driven {
                recorded,
                open: true,
                measured: duration,
            }
        }
        LoadMode::Closed => {
            let load = ClosedLoop {
                clients: scenario.load.clients.unwrap_or(1),
                orders: usize::MAX,
                duration: Some(duration),
                stream_base,
                deadline,
            };
            let recorded = closed::run(connections, data, &workload, &load).await;
            Driven {
                measured: recorded.elapsed,
                recorded,
                open: false,
            }
        }
    }
}
