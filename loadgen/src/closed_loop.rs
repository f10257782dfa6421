//! Closed-loop load: N clients, each placing its next order as soon as the previous one is
//! answered. Latency is measured per outcome in HdrHistograms, one recorder per worker, merged.

use crate::connections::Connections;
use crate::open_loop::SecondBucket;
use crate::workload::{OrderGenerator, WorkloadSpec};
use common::api::pb::{OutcomeKind as PbOutcome, PlaceOrderRequest};
use common::api::OrderApiClient;
use common::datagen::DataSet;
use common::domain::OutcomeKind;
use common::metrics::{new_histogram, record};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ClosedLoop {
    pub clients: usize,
    /// Orders to place at most.
    pub orders: usize,
    /// Stop starting orders after this long, if set.
    pub duration: Option<Duration>,
    /// Distinguishes the order streams of successive loads (warm-up, measurement) on one data
    /// set, so that no two loads generate the same order ids.
    pub stream_base: u64,
    /// The deadline each request carries.
    pub deadline: Duration,
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Latency (µs), by outcome.
    pub latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    /// The same answers per second of arrival, for the HdrHistogram interval log.
    pub intervals: crate::intervals::Intervals,
    /// Requests that got no Outcome at all (transport errors, refusals), by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// From the first order's start to the last answer.
    pub elapsed: Duration,
    /// Per second of the run, by start time.
    pub timeline: Vec<SecondBucket>,
    /// What each answered order was told, for the checker.
    pub told: Vec<(common::domain::OrderId, OutcomeKind)>,
    /// Orders that got no answer (transport errors, give-ups).
    pub unanswered: Vec<common::domain::OrderId>,
}

impl LoadResult {
    pub fn count(&self, kind: OutcomeKind) -> u64 {
        self.latency.get(&kind).map_or(0, |h| h.len())
    }

    pub fn started(&self) -> u64 {
        self.timeline.iter().map(|b| b.scheduled).sum()
    }

    /// Merges another recorder's results (same bounds everywhere).
    fn merge(&mut self, other: LoadResult) {
        for (kind, h) in other.latency {
            self.latency
                .entry(kind)
                .or_insert_with(new_histogram)
                .add(&h)
                .expect("same bounds");
        }
        self.intervals.merge(&other.intervals);
        self.told.extend(other.told);
        self.unanswered.extend(other.unanswered);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for b in &other.timeline {
            bucket(&mut self.timeline, b.second as usize).add(b);
        }
    }
}

fn bucket(timeline: &mut Vec<SecondBucket>, second: usize) -> &mut SecondBucket {
    while timeline.len() <= second {
        let next = timeline.len() as u64;
        timeline.push(SecondBucket {
            second: next,
            ..SecondBucket::default()
        });
    }
    &mut timeline[second]
}

/// Maps the wire outcome to the domain's.
pub fn outcome_kind(kind: PbOutcome) -> OutcomeKind {
    match kind {
        PbOutcome::Committed => OutcomeKind::Committed,
        PbOutcome::Rejected => OutcomeKind::Rejected,
        PbOutcome::Aborted => OutcomeKind::Aborted,
        _ => OutcomeKind::Undecided,
    }
}

pub async fn run(
    connections: &Connections,
    data: &DataSet,
    workload: &WorkloadSpec,
    load: &ClosedLoop,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let started_at = Instant::now();
    let begin_unix_us = common::api::unix_micros_now();
    let progress = tokio::spawn(report_progress(next.clone(), load.orders));
    let mut tasks = Vec::new();
    for index in 0..load.clients {
        let mut client = OrderApiClient::new(connections.next());
        let mut orders = OrderGenerator::new(workload, data, load.stream_base + index as u64);
        let (next, load) = (next.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = LoadResult::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= load.orders || load.duration.is_some_and(|d| started_at.elapsed() >= d) {
                    return mine;
                }
                let order = orders.next_order();
                let mut request = PlaceOrderRequest::from(&order);
                request.deadline_ms = load.deadline.as_millis() as u32;
                let started = Instant::now();
                let second = (started - started_at).as_secs() as usize;
                bucket(&mut mine.timeline, second).scheduled += 1;
                // A silent partition must not hang the run: give up as the open loop does.
                let give_up = load.deadline + crate::open_loop::GIVE_UP_AFTER_DEADLINE;
                let answer = match tokio::time::timeout(give_up, client.place_order(request)).await
                {
                    Ok(answer) => answer.map_err(|status| format!("{:?}", status.code())),
                    Err(_) => Err("ClientTimeout".to_string()),
                };
                match answer {
                    Ok(reply) => {
                        let kind = outcome_kind(reply.into_inner().kind());
                        let latency = started.elapsed();
                        mine.told.push((order.id, kind));
                        mine.intervals
                            .record(started + latency - started_at, kind, latency);
                        record(
                            mine.latency.entry(kind).or_insert_with(new_histogram),
                            latency,
                        );
                        bucket(&mut mine.timeline, second).count(kind, latency <= load.deadline);
                        if kind == OutcomeKind::Committed {
                            let done = (started + latency - started_at).as_secs() as usize;
                            bucket(&mut mine.timeline, done).committed_by_completion += 1;
                        }
                    }
                    Err(code) => {
                        mine.unanswered.push(order.id);
                        *mine.errors.entry(code).or_default() += 1;
                        bucket(&mut mine.timeline, second).errors += 1;
                    }
                }
            }
        }));
    }
    let mut result = LoadResult::default();
    for task in tasks {
        result.merge(task.await.expect("workers do not panic"));
    }
    result.intervals.begin_unix_us = begin_unix_us;
    result.elapsed = started_at.elapsed();
    progress.abort();
    result
}

/// One line a second on stderr: orders done and the current rate.
async fn report_progress(next: Arc<AtomicUsize>, total: usize) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = next.load(Ordering::Relaxed).min(total);
        eprintln!("  {done} orders, {}/s", done - last);
        last = done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_recorders_merge_into_what_one_recorder_would_hold() {
        let (mut a, mut b, mut one) = (
            LoadResult::default(),
            LoadResult::default(),
            new_histogram(),
        );
        for v in 1..=5_000u64 {
            let d = Duration::from_micros(v * 37 % 100_000 + 1);
            let worker = if v % 3 == 0 { &mut a } else { &mut b };
            record(
                worker
                    .latency
                    .entry(OutcomeKind::Committed)
                    .or_insert_with(new_histogram),
                d,
            );
            bucket(&mut worker.timeline, (v % 7) as usize).count(OutcomeKind::Committed, true);
            record(&mut one, d);
        }
        *a.errors.entry("Unavailable".into()).or_default() += 2;
        *b.errors.entry("Unavailable".into()).or_default() += 3;
        let mut merged = LoadResult::default();
        merged.merge(a);
        merged.merge(b);
        let h = &merged.latency[&OutcomeKind::Committed];
        assert_eq!(h.len(), one.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                h.value_at_quantile(q),
                one.value_at_quantile(q),
                "quantile {q}"
            );
        }
        assert_eq!(merged.errors["Unavailable"], 5);
        assert_eq!(
            merged.timeline.iter().map(|b| b.committed).sum::<u64>(),
            5_000
        );
        assert_eq!(merged.timeline.len(), 7);
    }
}
