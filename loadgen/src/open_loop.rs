//! Open-loop load, as wrk2 does it: orders start on a schedule (constant or Poisson arrivals)
//! whether or not earlier ones were answered, and each latency is measured from the order's
//! *scheduled* start, so a stalled system is charged for every order it kept waiting
//! (coordinated omission corrected). An in-flight cap bounds memory; orders dropped at the cap
//! are counted, never hidden.

use crate::closed_loop::outcome_kind;
use crate::workload::{OrderGenerator, WorkloadSpec};
use common::api::pb::PlaceOrderRequest;
use common::api::unix_micros_now;
use common::api::OrderApiClient;
use common::datagen::DataSet;
use common::domain::{OrderId, OutcomeKind};
use common::metrics::{new_histogram, record};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Channel;

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
    /// Yield-spin through the last millisecond before each start instead of sleeping to it:
    /// starts within microseconds of schedule, at the price of a busy core. Only for measuring
    /// the generator itself; a lab run must leave the CPU to the system under test (latency is
    /// measured from the scheduled start either way).
    pub precise: bool,
}

/// One second of the run, by scheduled start.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecondBucket {
    pub second: u64,
    pub scheduled: u64,
    pub committed: u64,
    pub rejected: u64,
    pub aborted: u64,
    pub undecided: u64,
    pub errors: u64,
    pub dropped: u64,
    /// COMMITTED or REJECTED within the deadline (DESIGN §6).
    pub available: u64,
}

impl SecondBucket {
    /// Counts one answer; `in_time` when it came within the deadline.
    pub fn count(&mut self, kind: OutcomeKind, in_time: bool) {
        match kind {
            OutcomeKind::Committed => self.committed += 1,
            OutcomeKind::Rejected => self.rejected += 1,
            OutcomeKind::Aborted => self.aborted += 1,
            OutcomeKind::Undecided => self.undecided += 1,
        }
        if kind.is_available() && in_time {
            self.available += 1;
        }
    }

    /// Adds another recorder's counts for the same second.
    pub fn add(&mut self, other: &SecondBucket) {
        self.scheduled += other.scheduled;
        self.committed += other.committed;
        self.rejected += other.rejected;
        self.aborted += other.aborted;
        self.undecided += other.undecided;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.available += other.available;
    }
}

#[derive(Debug)]
pub struct OpenLoopResult {
    /// Latency from scheduled start (µs), by outcome.
    pub latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    /// How late each order actually started (µs): the generator's own precision.
    pub schedule_lag: Histogram<u64>,
    /// From scheduled start to the server's acceptance (µs), for orders it accepted.
    pub acceptance: Histogram<u64>,
    /// Requests that got no Outcome (transport errors, refusals), by gRPC code.
    pub errors: BTreeMap<String, u64>,
    pub dropped_at_cap: u64,
    pub timeline: Vec<SecondBucket>,
    /// What each answered order was told, for the checker.
    pub told: Vec<(OrderId, OutcomeKind)>,
    /// Orders started, and the span from the first start to the last.
    pub started: u64,
    pub start_span: Duration,
}

struct Answer {
    order_id: OrderId,
    scheduled_offset: Duration,
    latency: Duration,
    /// From the scheduled start to the moment the server accepted the order (sagas: PENDING).
    accepted_after: Option<Duration>,
    outcome: Result<OutcomeKind, String>,
}

/// Runs the schedule against `channel` and waits for every answer.
pub async fn run(
    channel: Channel,
    data: &DataSet,
    workload: &WorkloadSpec,
    load: &OpenLoop,
) -> OpenLoopResult {
    let (answers_tx, answers_rx) = mpsc::unbounded_channel::<Answer>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let seconds = load.duration.as_secs().max(1) as usize;
    let collector = tokio::spawn(collect(
        answers_rx,
        seconds,
        load.deadline,
        in_flight.clone(),
    ));
    let mut orders = OrderGenerator::new(workload, data, load.stream_base);
    let mut gaps = ChaCha8Rng::seed_from_u64(load.seed);
    let mut result = OpenLoopResult {
        latency: BTreeMap::new(),
        schedule_lag: new_histogram(),
        acceptance: new_histogram(),
        errors: BTreeMap::new(),
        dropped_at_cap: 0,
        timeline: (0..seconds as u64)
            .map(|second| SecondBucket {
                second,
                ..SecondBucket::default()
            })
            .collect(),
        told: Vec::new(),
        started: 0,
        start_span: Duration::ZERO,
    };
    let mean_gap = 1.0 / load.rate;
    let begin = Instant::now();
    let begin_unix_us = unix_micros_now();
    let mut offset = 0.0_f64; // seconds after `begin` of the next scheduled start
    let mut last_start = begin;
    while offset < load.duration.as_secs_f64() {
        let intended = begin + Duration::from_secs_f64(offset);
        let now = Instant::now();
        if intended > now {
            let wait = intended - now;
            // Timers tick in milliseconds: sleep most of the wait, then (precise) yield until the moment.
            if !load.precise {
                tokio::time::sleep(wait).await;
            } else if wait > Duration::from_millis(2) {
                tokio::time::sleep(wait - Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
            continue;
        }
        let bucket = &mut result.timeline[(offset as usize).min(seconds - 1)];
        bucket.scheduled += 1;
        if in_flight.load(Ordering::Relaxed) >= load.max_in_flight {
            bucket.dropped += 1;
            result.dropped_at_cap += 1;
        } else {
            record(&mut result.schedule_lag, now - intended);
            in_flight.fetch_add(1, Ordering::Relaxed);
            result.started += 1;
            last_start = now;
            let order = orders.next_order();
            let order_id = order.id;
            let mut request = PlaceOrderRequest::from(&order);
            request.deadline_ms = load.deadline.as_millis() as u32;
            let mut client = OrderApiClient::new(channel.clone());
            let answers = answers_tx.clone();
            let scheduled_offset = intended - begin;
            tokio::spawn(async move {
                let mut accepted_after = None;
                let outcome = match client.place_order(request).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        accepted_after =
                            accepted_since(reply.accepted_unix_us, begin_unix_us, scheduled_offset);
                        Ok(outcome_kind(reply.kind()))
                    }
                    Err(status) => Err(format!("{:?}", status.code())),
                };
                let _ = answers.send(Answer {
                    order_id,
                    scheduled_offset,
                    latency: intended.elapsed(),
                    accepted_after,
                    outcome,
                });
            });
        }
        offset += match load.arrivals {
            Arrivals::Constant => mean_gap,
            Arrivals::Poisson => -(1.0 - gaps.gen::<f64>()).ln() * mean_gap,
        };
    }
    result.start_span = last_start - begin;
    drop(answers_tx);
    let answered = collector.await.expect("the collector does not panic");
    result.latency = answered.latency;
    result.acceptance = answered.acceptance;
    result.errors = answered.errors;
    result.told = answered.told;
    for (mine, theirs) in result.timeline.iter_mut().zip(&answered.timeline) {
        mine.add(theirs);
    }
    result
}

/// What the collector learned from the answers.
struct Answered {
    told: Vec<(OrderId, OutcomeKind)>,
    latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    acceptance: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    timeline: Vec<SecondBucket>,
}

/// Receives every answer as it comes (one owner of the histograms, no locks) and prints a
/// progress line a second: answers, committed/s and the last second's p99.
async fn collect(
    mut answers: mpsc::UnboundedReceiver<Answer>,
    seconds: usize,
    deadline: Duration,
    in_flight: Arc<AtomicUsize>,
) -> Answered {
    let mut out = Answered {
        told: Vec::new(),
        latency: BTreeMap::new(),
        acceptance: new_histogram(),
        errors: BTreeMap::new(),
        timeline: (0..seconds as u64)
            .map(|second| SecondBucket {
                second,
                ..SecondBucket::default()
            })
            .collect(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_second, mut committed_last_second, mut answered) = (new_histogram(), 0u64, 0u64);
    loop {
        tokio::select! {
            answer = answers.recv() => {
                let Some(answer) = answer else { return out };
                in_flight.fetch_sub(1, Ordering::Relaxed);
                answered += 1;
                let bucket = &mut out.timeline[(answer.scheduled_offset.as_secs() as usize).min(seconds - 1)];
                match answer.outcome {
                    Ok(kind) => {
                        out.told.push((answer.order_id, kind));
                        record(out.latency.entry(kind).or_insert_with(new_histogram), answer.latency);
                        record(&mut last_second, answer.latency);
                        committed_last_second += u64::from(kind == OutcomeKind::Committed);
                        if let Some(accepted) = answer.accepted_after {
                            record(&mut out.acceptance, accepted);
                        }
                        bucket.count(kind, answer.latency <= deadline);
                    }
                    Err(code) => {
                        bucket.errors += 1;
                        *out.errors.entry(code).or_default() += 1;
                    }
                }
            }
            _ = tick.tick() => {
                eprintln!(
                    "  {answered} answered, {} in flight, {committed_last_second} committed/s, p99 {:.1} ms",
                    in_flight.load(Ordering::Relaxed),
                    last_second.value_at_quantile(0.99) as f64 / 1000.0
                );
                last_second.reset();
                committed_last_second = 0;
            }
        }
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

impl OpenLoopResult {
    /// Started orders per second of schedule actually kept.
    pub fn achieved_rate(&self) -> f64 {
        self.started as f64 / self.start_span.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    pub fn count(&self, kind: OutcomeKind) -> u64 {
        self.latency.get(&kind).map_or(0, |h| h.len())
    }
}
