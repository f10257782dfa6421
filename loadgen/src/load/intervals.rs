//! Client latency per second of the run, by outcome: what an HdrHistogram interval log holds, so
//! that a reader (or HdrHistogram's own `HistogramLogProcessor`) sees how latency moved over
//! the run, not one distribution for all of it.

use common::domain::OutcomeKind;
use common::metrics::{new_histogram, record};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies (µs) by the second their answer arrived, counted from the start of the load.
#[derive(Debug, Default)]
pub struct Intervals {
    /// When the load began, microseconds since the Unix epoch: the log's real base time.
    pub begin_unix_us: u64,
    seconds: Vec<BTreeMap<OutcomeKind, Histogram<u64>>>,
}

impl Intervals {
    pub fn new(begin_unix_us: u64) -> Intervals {
        Intervals {
            begin_unix_us,
            seconds: Vec::new(),
        }
    }

    /// Records one answer of `kind` that took `latency` and arrived `answered_after` the start.
    pub fn record(&mut self, answered_after: Duration, kind: OutcomeKind, latency: Duration) {
        let second = answered_after.as_secs() as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, BTreeMap::new);
        }
        record(
            self.seconds[second]
                .entry(kind)
                .or_insert_with(new_histogram),
            latency,
        );
    }

    /// Adds another recorder's intervals (same start, same bounds).
    pub fn merge(&mut self, other: &Intervals) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), BTreeMap::new);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            for (kind, h) in theirs {
                mine.entry(*kind)
                    .or_insert_with(new_histogram)
                    .add(h)
                    .expect("same bounds");
            }
        }
    }

    /// Each second (its offset from the start) with its histograms by outcome.
    pub fn seconds(&self) -> impl Iterator<Item = (u64, &BTreeMap<OutcomeKind, Histogram<u64>>)> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(s, by_kind)| (s as u64, by_kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_land_in_the_second_they_arrived_and_merge_adds_them_up() {
        let ms = Duration::from_millis;
        let mut a = Intervals::new(1);
        a.record(ms(300), OutcomeKind::Committed, ms(5));
        a.record(ms(2_100), OutcomeKind::Aborted, ms(900));
        let mut b = Intervals::new(1);
        b.record(ms(999), OutcomeKind::Committed, ms(7));
        b.record(ms(4_000), OutcomeKind::Committed, ms(9));
        a.merge(&b);
        let counts: Vec<(u64, usize)> = a
            .seconds()
            .map(|(s, by_kind)| (s, by_kind.values().map(|h| h.len() as usize).sum()))
            .collect();
        assert_eq!(counts, vec![(0, 2), (1, 0), (2, 1), (3, 0), (4, 1)]);
    }
}
