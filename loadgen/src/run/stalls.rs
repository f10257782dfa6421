//! Each run's slowest second and what the machine did in it. A tail that moves from run to run
//! (issue 11: 2PC's p99 at 17 ms in one run, 322 ms in another) is most often one bad second;
//! putting that second's client p99 beside its WAL volume, checkpoints and busiest process names
//! the likely cause in the report instead of leaving it to a reader's guess.

use crate::load::intervals::Intervals;
use crate::report::spread::Spread;
use crate::run::resources::ResourceSecond;
use common::metrics::new_histogram;
use serde::{Deserialize, Serialize};

/// Seconds with fewer answers than this are not ranked: their p99 is one or two samples.
const MIN_ANSWERS: u64 = 20;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowestSecond {
    /// Offset from the start of the measured window.
    pub second: u64,
    /// Answers (every outcome) that arrived in that second.
    pub answers: u64,
    /// Their latency p99, ms.
    pub p99_ms: f64,
    /// The median over the window's ranked seconds of the same p99, ms.
    pub typical_p99_ms: f64,
    /// WAL PostgreSQL wrote in that second, and in the window's median second, bytes.
    pub wal_bytes: Option<u64>,
    pub typical_wal_bytes: Option<u64>,
    /// Checkpoints that completed in that second.
    pub checkpoints: Option<u64>,
    /// The process with the most CPU time in that second, and that time (ms of one core).
    pub busiest: Option<(String, u64)>,
}

/// The window's second with the highest client p99, with the resources sampled in it; `None`
/// when no second had [`MIN_ANSWERS`] answers.
pub fn slowest_second(
    intervals: &Intervals,
    resources: &[ResourceSecond],
    window_s: u64,
) -> Option<SlowestSecond> {
    let ranked: Vec<(u64, u64, f64)> = intervals
        .seconds()
        .filter(|(second, _)| *second < window_s)
        .filter_map(|(second, by_kind)| {
            let mut all = new_histogram();
            for h in by_kind.values() {
                all.add(h).expect("every lab histogram has the same bounds");
            }
            (all.len() >= MIN_ANSWERS).then(|| {
                (
                    second,
                    all.len(),
                    all.value_at_quantile(0.99) as f64 / 1000.0,
                )
            })
        })
        .collect();
    let typical_p99_ms = Spread::of(ranked.iter().map(|r| r.2))?.median;
    let &(second, answers, p99_ms) = ranked.iter().max_by(|a, b| a.2.total_cmp(&b.2))?;
    let sample = resources.iter().find(|r| r.second == second);
    let typical_wal_bytes = Spread::of(
        resources
            .iter()
            .filter_map(|r| r.wal_bytes)
            .map(|b| b as f64),
    )
    .map(|s| s.median as u64);
    Some(SlowestSecond {
        second,
        answers,
        p99_ms,
        typical_p99_ms,
        wal_bytes: sample.and_then(|s| s.wal_bytes),
        typical_wal_bytes,
        checkpoints: sample.and_then(|s| s.checkpoints),
        busiest: sample.and_then(|s| {
            s.cpu_ms
                .iter()
                .max_by_key(|(_, ms)| **ms)
                .map(|(name, ms)| (name.clone(), *ms))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::domain::OutcomeKind;
    use std::time::Duration;

    fn resources(second: u64, wal: u64, busiest: &str) -> ResourceSecond {
        ResourceSecond {
            second,
            cpu_ms: [(busiest.to_string(), 900), ("loadgen".to_string(), 50)].into(),
            wal_bytes: Some(wal),
            checkpoints: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn finds_the_second_with_the_worst_tail_and_what_ran_in_it() {
        let ms = Duration::from_millis;
        let mut intervals = Intervals::new(1);
        for second in 0..5u64 {
            let slow = if second == 3 { 300 } else { 5 };
            for i in 0..40u64 {
                let latency = if i == 39 { ms(slow) } else { ms(4) };
                intervals.record(ms(second * 1000 + i), OutcomeKind::Committed, latency);
            }
        }
        // A thin second past the window is never ranked.
        intervals.record(ms(5_500), OutcomeKind::Aborted, ms(900));
        let samples: Vec<_> = (0..5)
            .map(|s| resources(s, if s == 3 { 2_000_000 } else { 150_000 }, "postgres"))
            .collect();
        let slowest = slowest_second(&intervals, &samples, 5).unwrap();
        assert_eq!(slowest.second, 3);
        assert_eq!(slowest.answers, 40);
        assert!(
            slowest.p99_ms >= 299.0 && slowest.typical_p99_ms < 10.0,
            "{slowest:?}"
        );
        assert_eq!(slowest.wal_bytes, Some(2_000_000));
        assert_eq!(slowest.typical_wal_bytes, Some(150_000));
        assert_eq!(slowest.busiest, Some(("postgres".to_string(), 900)));
        assert!(slowest_second(&Intervals::new(1), &samples, 5).is_none());
    }
}
