//! Each process's own figures, decoded from its metrics snapshots. A process that was SIGKILLed
//! and restarted during a run gives two snapshots, one read just before the kill and one at the
//! end, and they add up to one set of figures: histograms and counters are summed, maxima take the
//! larger value.

use common::metrics::pb::Snapshot;
use common::metrics::{decode, DecodeError};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// One process's figures over the measured run.
pub struct ProcessFigures {
    /// e.g. "participant/payment".
    pub service: String,
    pub histograms: BTreeMap<String, Histogram<u64>>,
    pub counters: BTreeMap<String, u64>,
    pub maxima: BTreeMap<String, u64>,
    /// The settings it reported running with (the latest snapshot's, after a restart).
    pub settings: BTreeMap<String, String>,
}

impl ProcessFigures {
    fn of(snapshot: &Snapshot) -> Result<ProcessFigures, DecodeError> {
        Ok(ProcessFigures {
            service: snapshot.service.clone(),
            histograms: decode(snapshot)?,
            counters: snapshot.counters.clone().into_iter().collect(),
            maxima: snapshot.maxima.clone().into_iter().collect(),
            settings: snapshot.settings.clone().into_iter().collect(),
        })
    }

    fn absorb(&mut self, other: ProcessFigures) {
        for (name, h) in other.histograms {
            match self.histograms.get_mut(&name) {
                Some(mine) => mine
                    .add(&h)
                    .expect("every lab histogram has the same bounds"),
                None => {
                    self.histograms.insert(name, h);
                }
            }
        }
        for (name, n) in other.counters {
            *self.counters.entry(name).or_default() += n;
        }
        for (name, v) in other.maxima {
            let mine = self.maxima.entry(name).or_default();
            *mine = (*mine).max(v);
        }
        self.settings.extend(other.settings);
    }
}

/// One entry per process, in the order processes first appear; snapshots of the same process
/// (its service name) are added together.
pub fn by_process(snapshots: &[Snapshot]) -> Result<Vec<ProcessFigures>, DecodeError> {
    let mut out: Vec<ProcessFigures> = Vec::new();
    for snapshot in snapshots {
        let figures = ProcessFigures::of(snapshot)?;
        match out.iter_mut().find(|f| f.service == figures.service) {
            Some(earlier) => earlier.absorb(figures),
            None => out.push(figures),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::metrics::MetricsRegistry;
    use std::time::Duration;

    fn snapshot(service: &str, lock_ms: &[u64], commits: u64, in_doubt_ms: u64) -> Snapshot {
        let registry = MetricsRegistry::new(service);
        for ms in lock_ms {
            registry.record("lock_hold", Duration::from_millis(*ms));
        }
        registry.add("commits", commits);
        registry.observe_max("in_doubt_max", Duration::from_millis(in_doubt_ms));
        registry.snapshot(false)
    }

    #[test]
    fn a_restarted_process_adds_up_and_others_stay_apart() {
        let before_kill = snapshot("participant/payment", &[1, 2, 3], 3, 40);
        let other = snapshot("participant/order", &[5], 1, 0);
        let after_restart = snapshot("participant/payment", &[700, 4], 2, 900);
        let figures = by_process(&[before_kill, other, after_restart]).unwrap();
        assert_eq!(figures.len(), 2);
        let payment = &figures[0];
        assert_eq!(payment.service, "participant/payment");
        let lock = &payment.histograms["lock_hold"];
        assert_eq!(lock.len(), 5, "3 before the kill + 2 after the restart");
        assert!(
            lock.max() >= 699_000 && lock.min() <= 1_001,
            "{} {}",
            lock.min(),
            lock.max()
        );
        assert_eq!(payment.counters["commits"], 5);
        assert!(
            payment.maxima["in_doubt_max"] >= 899_000,
            "the larger maximum"
        );
        assert_eq!(figures[1].service, "participant/order");
        assert_eq!(figures[1].histograms["lock_hold"].len(), 1);
    }
}
