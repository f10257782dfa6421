//! What the clients saw, recorded the same way by both loops: latency per outcome in
//! HdrHistograms, the per-second timeline, errors, and what each order was told (for the
//! checker). The open loop records into one window of fixed seconds; the closed loop's workers
//! each record into a growing timeline and are merged.

use crate::load::intervals::Intervals;
use common::api::pb::OutcomeKind as PbOutcome;
use common::domain::{OrderId, OutcomeKind};
use common::metrics::{new_histogram, record};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// COMMITTED answers that *arrived* in this second, whenever they were scheduled: the
    /// throughput timeline, where a stall shows as a dip (the fields above are by start).
    #[serde(default)]
    pub committed_by_completion: u64,
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
        let SecondBucket {
            second: _,
            scheduled,
            committed,
            rejected,
            aborted,
            undecided,
            errors,
            dropped,
            available,
            committed_by_completion,
        } = other;
        for (mine, theirs) in [
            (&mut self.scheduled, scheduled),
            (&mut self.committed, committed),
            (&mut self.rejected, rejected),
            (&mut self.aborted, aborted),
            (&mut self.undecided, undecided),
            (&mut self.errors, errors),
            (&mut self.dropped, dropped),
            (&mut self.available, available),
            (&mut self.committed_by_completion, committed_by_completion),
        ] {
            *mine += theirs;
        }
    }
}

/// One answered (or failed) order.
pub struct Answer {
    pub order_id: OrderId,
    /// When it was (open loop: scheduled; closed loop: started) after the load began.
    pub start_offset: Duration,
    pub latency: Duration,
    /// From the start to the moment the server accepted the order (sagas: PENDING), when the
    /// loop measures it.
    pub accepted_after: Option<Duration>,
    /// The outcome, or the gRPC code (or "ClientTimeout") of a request that got none.
    pub outcome: Result<OutcomeKind, String>,
}

/// What the clients saw.
#[derive(Debug)]
pub struct Recorded {
    /// Latency (µs) by outcome: from the scheduled start (open loop) or the start (closed).
    pub latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    /// The same answers per second of arrival, for the HdrHistogram interval log.
    pub intervals: Intervals,
    /// Requests that got no Outcome (transport errors, refusals, give-ups), by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// Per second of the run, by start.
    pub timeline: Vec<SecondBucket>,
    /// COMMITTED answers that arrived after a fixed window ended (the run waits for every
    /// answer, but throughput counts only what the window completed).
    pub committed_after_window: u64,
    /// What each answered order was told, for the checker.
    pub told: Vec<(OrderId, OutcomeKind)>,
    /// Orders that got no answer: the checker says where they ended.
    pub unanswered: Vec<OrderId>,
    /// Orders started, and (open loop) dropped at the in-flight cap.
    pub started: u64,
    pub dropped_at_cap: u64,
    /// Open loop: the most orders that were in flight at once.
    pub in_flight_peak: usize,
    /// Open loop: how late each order actually started (µs), the generator's own precision.
    pub schedule_lag: Histogram<u64>,
    /// From the start to the server's acceptance (µs), for orders it accepted.
    pub acceptance: Histogram<u64>,
    /// From the first start to the last start.
    pub start_span: Duration,
    /// From the first start to the last answer.
    pub elapsed: Duration,
    /// The open loop's window in seconds: its timeline has exactly these seconds. None: the
    /// timeline grows with the run (closed loop).
    window: Option<usize>,
}

impl Recorded {
    /// A recorder whose timeline is `seconds` long (open loop).
    pub fn fixed_window(seconds: usize, begin_unix_us: u64) -> Recorded {
        let mut recorded = Recorded::growing();
        recorded.intervals = Intervals::new(begin_unix_us);
        recorded.window = Some(seconds.max(1));
        recorded.timeline = (0..seconds.max(1) as u64)
            .map(|second| SecondBucket {
                second,
                ..SecondBucket::default()
            })
            .collect();
        recorded
    }

    /// A recorder whose timeline grows as seconds pass (closed loop).
    pub fn growing() -> Recorded {
        Recorded {
            latency: BTreeMap::new(),
            intervals: Intervals::default(),
            errors: BTreeMap::new(),
            timeline: Vec::new(),
            committed_after_window: 0,
            told: Vec::new(),
            unanswered: Vec::new(),
            started: 0,
            dropped_at_cap: 0,
            in_flight_peak: 0,
            schedule_lag: new_histogram(),
            acceptance: new_histogram(),
            start_span: Duration::ZERO,
            elapsed: Duration::ZERO,
            window: None,
        }
    }

    /// The bucket of `second` (the last one for a start past a fixed window).
    pub fn bucket(&mut self, second: usize) -> &mut SecondBucket {
        let index = match self.window {
            Some(seconds) => second.min(seconds - 1),
            None => {
                while self.timeline.len() <= second {
                    let next = self.timeline.len() as u64;
                    self.timeline.push(SecondBucket {
                        second: next,
                        ..SecondBucket::default()
                    });
                }
                second
            }
        };
        &mut self.timeline[index]
    }

    /// Counts one answer into the histograms and the timeline; `deadline` decides whether it
    /// counts as available.
    pub fn answer(&mut self, answer: Answer, deadline: Duration) {
        let second = answer.start_offset.as_secs() as usize;
        match answer.outcome {
            Ok(kind) => {
                self.told.push((answer.order_id, kind));
                record(
                    self.latency.entry(kind).or_insert_with(new_histogram),
                    answer.latency,
                );
                let arrived = answer.start_offset + answer.latency;
                self.intervals.record(arrived, kind, answer.latency);
                if let Some(accepted) = answer.accepted_after {
                    record(&mut self.acceptance, accepted);
                }
                self.bucket(second).count(kind, answer.latency <= deadline);
                if kind == OutcomeKind::Committed {
                    let done = arrived.as_secs() as usize;
                    if self.window.is_some_and(|seconds| done >= seconds) {
                        self.committed_after_window += 1;
                    } else {
                        self.bucket(done).committed_by_completion += 1;
                    }
                }
            }
            Err(code) => {
                self.unanswered.push(answer.order_id);
                self.bucket(second).errors += 1;
                *self.errors.entry(code).or_default() += 1;
            }
        }
    }

    /// Merges another recorder's results (same bounds everywhere).
    pub fn merge(&mut self, other: Recorded) {
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
            self.bucket(b.second as usize).add(b);
        }
        self.started += other.started;
        self.dropped_at_cap += other.dropped_at_cap;
        self.in_flight_peak = self.in_flight_peak.max(other.in_flight_peak);
        self.committed_after_window += other.committed_after_window;
        self.schedule_lag
            .add(&other.schedule_lag)
            .expect("same bounds");
        self.acceptance.add(&other.acceptance).expect("same bounds");
    }

    pub fn count(&self, kind: OutcomeKind) -> u64 {
        self.latency.get(&kind).map_or(0, |h| h.len())
    }

    /// Started orders per second of schedule actually kept.
    /// Orders *started* per second over the span of starts: how fast the generator issued
    /// them, not how fast they were answered (see [`Recorded::answered_in_time`]).
    pub fn achieved_rate(&self) -> f64 {
        self.started as f64 / self.start_span.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Answers that came within the deadline with an outcome that counts as available, over
    /// the whole timeline.
    pub fn answered_in_time(&self) -> u64 {
        self.timeline.iter().map(|b| b.available).sum()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use common::domain::OrderId;

    fn committed(start_s: u64, latency_us: u64) -> Answer {
        Answer {
            order_id: OrderId::new_random(),
            start_offset: Duration::from_secs(start_s),
            latency: Duration::from_micros(latency_us),
            accepted_after: None,
            outcome: Ok(OutcomeKind::Committed),
        }
    }

    #[test]
    fn per_worker_recorders_merge_into_what_one_recorder_would_hold() {
        let (mut a, mut b, mut one) = (Recorded::growing(), Recorded::growing(), new_histogram());
        let deadline = Duration::from_secs(1);
        for v in 1..=5_000u64 {
            let latency = v * 37 % 100_000 + 1;
            let worker = if v % 3 == 0 { &mut a } else { &mut b };
            worker.answer(committed(v % 7, latency), deadline);
            record(&mut one, Duration::from_micros(latency));
        }
        *a.errors.entry("Unavailable".into()).or_default() += 2;
        *b.errors.entry("Unavailable".into()).or_default() += 3;
        let mut merged = Recorded::growing();
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

    #[test]
    fn a_fixed_window_counts_late_commits_apart_and_keeps_its_length() {
        let mut r = Recorded::fixed_window(3, 0);
        let deadline = Duration::from_millis(500);
        r.answer(committed(0, 1_000), deadline); // done in second 0
        r.answer(committed(2, 900_000), deadline); // done in second 2, after the deadline
        r.answer(committed(2, 1_500_000), deadline); // done in second 3: after the window
        assert_eq!(r.timeline.len(), 3);
        assert_eq!(r.timeline[2].committed, 2);
        assert_eq!(r.timeline[2].available, 0, "both came after the deadline");
        assert_eq!(r.committed_after_window, 1);
        let by_completion: u64 = r.timeline.iter().map(|b| b.committed_by_completion).sum();
        assert_eq!(by_completion, 2);
    }
}
