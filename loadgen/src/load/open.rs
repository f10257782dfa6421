//! Open-loop load, as wrk2 does it: orders start on a schedule (constant or Poisson arrivals)
//! whether or not earlier ones were answered, and each latency is measured from the order's
//! *scheduled* start, so a stalled system is charged for every order it kept waiting
//! (coordinated omission corrected). An in-flight cap bounds memory; orders dropped at the cap
//! are counted, never hidden.

use crate::load::connections::Connections;
use crate::load::recorder::{outcome_kind, Answer, Recorded};
use crate::load::timer::PreciseTimer;
use crate::load::workload::{OrderGenerator, WorkloadSpec};
use common::api::pb::PlaceOrderRequest;
use common::api::unix_micros_now;
use common::api::OrderApiClient;
use common::datagen::DataSet;
use common::domain::{OrderId, OutcomeKind};
use common::metrics::{new_histogram, record};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// How start times are spaced.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Exactly 1/rate apart.
    Constant,
    /// Exponentially distributed gaps with mean 1/rate (a Poisson process), seeded.
    Poisson,
}

#[derive(Clone, Debug)]
pub struct OpenLoop {
    /// Orders per second.
    pub rate: f64,
    pub duration: Duration,
    pub arrivals: Arrivals,
    /// Orders in flight at most; a scheduled order beyond it is dropped and counted.
    pub max_in_flight: usize,
    /// The deadline each request carries; answers within it count as available.
    pub deadline: Duration,
    /// Seed of the arrival process.
    pub seed: u64,
    /// Separates order streams of successive loads on one data set.
    pub stream_base: u64,
    /// Yield-spin through the last millisecond before each start, not just the last 100 µs:
    /// starts within microseconds of schedule even on a busy machine, at the price of a busy
    /// core. Only for measuring the generator itself; a lab run must leave the CPU to the
    /// system under test (latency is measured from the scheduled start either way).
    pub precise: bool,
    /// Windows in which the rate is multiplied (`surge` faults).
    pub surges: Vec<Surge>,
}

/// The offered rate multiplied by `factor` for starts scheduled in `from..to` (seconds after
/// the measured load begins): a traffic spike, the same for every protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Surge {
    pub from: Duration,
    pub to: Duration,
    pub factor: f64,
}

/// The rate's multiplier at `offset` seconds.
fn surge_factor(surges: &[Surge], offset: f64) -> f64 {
    surges
        .iter()
        .find(|s| s.from.as_secs_f64() <= offset && offset < s.to.as_secs_f64())
        .map_or(1.0, |s| s.factor)
}

/// Answers handled between two looks at the schedule: bounds how late a start can be because
/// the generator was busy reading answers.
const ANSWERS_PER_TURN: usize = 32;

/// Runs the schedule against `connections` and waits for every answer.
///
/// One task does everything: it starts the orders that are due, then handles the answers that
/// have come (at most [`ANSWERS_PER_TURN`] before looking at the schedule again), then waits
/// for whichever comes first, the next start or the next answer. Requests in flight are futures
/// in a `FuturesUnordered`, polled only when their answer arrives; no task per order, no channel.
pub async fn run(
    connections: &Connections,
    data: &DataSet,
    workload: &WorkloadSpec,
    load: &OpenLoop,
) -> Recorded {
    let seconds = load.duration.as_secs().max(1) as usize;
    let mut orders = OrderGenerator::new(workload, data, load.stream_base);
    let mut gaps = ChaCha8Rng::seed_from_u64(load.seed);
    let mut progress = Progress::default();
    let mut in_flight = FuturesUnordered::new();
    let mean_gap = 1.0 / load.rate;
    let begin = Instant::now();
    let begin_unix_us = unix_micros_now();
    let mut result = Recorded::fixed_window(seconds, begin_unix_us);
    let mut offset = 0.0_f64; // seconds after `begin` of the next scheduled start
    let mut last_start = begin;
    let mut next_progress = begin + Duration::from_secs(1);
    let timer = PreciseTimer::new();
    loop {
        let schedule_done = offset >= load.duration.as_secs_f64();
        if schedule_done && in_flight.is_empty() {
            break;
        }
        // Start everything that is due.
        let now = Instant::now();
        while !schedule_done && offset < load.duration.as_secs_f64() {
            let intended = begin + Duration::from_secs_f64(offset);
            if intended > now {
                break;
            }
            let bucket = result.bucket(offset as usize);
            bucket.scheduled += 1;
            // Drawn even when dropped, so every protocol sees the same order at the same instant.
            let order = orders.next_order();
            if in_flight.len() >= load.max_in_flight {
                bucket.dropped += 1;
                result.dropped_at_cap += 1;
            } else {
                record(&mut result.schedule_lag, now - intended);
                result.started += 1;
                last_start = now;
                let mut request = PlaceOrderRequest::from(&order);
                request.deadline_ms = load.deadline.as_millis() as u32;
                let client = OrderApiClient::new(connections.next());
                in_flight.push(place(
                    client,
                    request,
                    order.id,
                    Scheduled {
                        intended,
                        begin,
                        begin_unix_us,
                    },
                    load.deadline + GIVE_UP_AFTER_DEADLINE,
                ));
                result.in_flight_peak = result.in_flight_peak.max(in_flight.len());
            }
            let gap = mean_gap / surge_factor(&load.surges, offset);
            offset += match load.arrivals {
                Arrivals::Constant => gap,
                Arrivals::Poisson => -(1.0 - gaps.gen::<f64>()).ln() * gap,
            };
        }
        // Handle the answers already here, a bounded number at a time.
        let mut handled = 0;
        while handled < ANSWERS_PER_TURN {
            match in_flight.next().now_or_never() {
                Some(Some(answer)) => {
                    progress.note(&answer);
                    result.answer(answer, load.deadline);
                    handled += 1;
                }
                _ => break,
            }
        }
        if Instant::now() >= next_progress {
            progress.print(in_flight.len());
            next_progress += Duration::from_secs(1);
        }
        if handled == ANSWERS_PER_TURN {
            continue; // more may be waiting; look at the schedule first
        }
        // Wait for the next start or the next answer, whichever comes first.
        let next_start =
            (offset < load.duration.as_secs_f64()).then(|| begin + Duration::from_secs_f64(offset));
        let wait = next_start
            .unwrap_or(next_progress)
            .min(next_progress)
            .saturating_duration_since(Instant::now());
        if wait.is_zero() {
            continue;
        }
        // The timer wakes a little before the next start and the loop yields (letting the
        // connections' tasks run) through the rest, so the start does not inherit the wake-up
        // latency.
        let spin = if load.precise {
            PRECISE_SPIN_BEFORE_START
        } else {
            SPIN_BEFORE_START
        };
        let start_is_next = next_start.is_some_and(|start| start <= next_progress);
        if start_is_next && wait <= spin {
            tokio::task::yield_now().await;
            continue;
        }
        let wake = Instant::now() + if start_is_next { wait - spin } else { wait };
        tokio::select! {
            biased;
            answer = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(answer) = answer {
                    progress.note(&answer);
                    result.answer(answer, load.deadline);
                }
            }
            _ = timer.sleep_until(wake) => {}
        }
    }
    result.start_span = last_start - begin;
    result.elapsed = begin.elapsed();
    result
}

/// How long before an order is due a lab run's generator wakes, to yield through the rest: a
/// timer wake on a VM comes tens of microseconds late (more under load), and without this every
/// order would start that late. The busy part costs at most this much CPU per order: 0.4 % of a
/// core at 40 orders/s, 10 % at 1,000.
const SPIN_BEFORE_START: Duration = Duration::from_micros(100);

/// The same for `precise` runs (the generator measuring itself): a busy core near every start.
const PRECISE_SPIN_BEFORE_START: Duration = Duration::from_millis(1);

/// How long past its deadline the client still waits for an answer before it gives up on an
/// order (an error "ClientTimeout"): long enough for a partition to heal and held bytes to
/// flow, short enough that a server that never answers cannot hang the run.
pub const GIVE_UP_AFTER_DEADLINE: Duration = Duration::from_secs(60);

/// When an order was due.
struct Scheduled {
    intended: Instant,
    begin: Instant,
    begin_unix_us: u64,
}

/// Places one order and times it from its scheduled start.
async fn place(
    mut client: OrderApiClient<tonic::transport::Channel>,
    request: PlaceOrderRequest,
    order_id: OrderId,
    at: Scheduled,
    give_up: Duration,
) -> Answer {
    let Scheduled {
        intended,
        begin,
        begin_unix_us,
    } = at;
    let scheduled_offset = intended - begin;
    let mut accepted_after = None;
    let outcome = match tokio::time::timeout(give_up, client.place_order(request)).await {
        Err(_) => Err("ClientTimeout".to_string()),
        Ok(Ok(reply)) => {
            let reply = reply.into_inner();
            accepted_after =
                accepted_since(reply.accepted_unix_us, begin_unix_us, scheduled_offset);
            Ok(outcome_kind(reply.kind()))
        }
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
    };
    Answer {
        order_id,
        start_offset: scheduled_offset,
        latency: intended.elapsed(),
        accepted_after,
        outcome,
    }
}

/// The live line printed once a second: answers, committed/s and the last second's p99.
struct Progress {
    answered: u64,
    committed_last_second: u64,
    last_second: Histogram<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            answered: 0,
            committed_last_second: 0,
            last_second: new_histogram(),
        }
    }
}

impl Progress {
    fn note(&mut self, answer: &Answer) {
        self.answered += 1;
        if let Ok(kind) = answer.outcome {
            record(&mut self.last_second, answer.latency);
            self.committed_last_second += u64::from(kind == OutcomeKind::Committed);
        }
    }

    fn print(&mut self, in_flight: usize) {
        eprintln!(
            "  {} answered, {in_flight} in flight, {} committed/s, p99 {:.1} ms",
            self.answered,
            self.committed_last_second,
            self.last_second.value_at_quantile(0.99) as f64 / 1000.0
        );
        self.last_second.reset();
        self.committed_last_second = 0;
    }
}

/// The server's acceptance time relative to the order's scheduled start (same machine, same
/// clock), when it accepted the order at all.
pub fn accepted_since(
    accepted_unix_us: u64,
    begin_unix_us: u64,
    scheduled_offset: Duration,
) -> Option<Duration> {
    let scheduled_unix_us = begin_unix_us + scheduled_offset.as_micros() as u64;
    (accepted_unix_us > 0)
        .then(|| Duration::from_micros(accepted_unix_us.saturating_sub(scheduled_unix_us)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_surge_multiplies_the_rate_only_inside_its_window() {
        let surges = [Surge {
            from: Duration::from_secs(2),
            to: Duration::from_secs(4),
            factor: 3.0,
        }];
        assert_eq!(surge_factor(&surges, 1.999), 1.0);
        assert_eq!(surge_factor(&surges, 2.0), 3.0);
        assert_eq!(surge_factor(&surges, 3.99), 3.0);
        assert_eq!(surge_factor(&surges, 4.0), 1.0);
        assert_eq!(surge_factor(&[], 3.0), 1.0);
    }
}
