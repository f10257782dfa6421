//! With `--repeat N`: every headline figure per protocol as the median and the range (min–max)
//! of its N runs, so a reader sees how much of a difference between protocols is noise.

use crate::report::spread::Spread;
use crate::report::summary::{ProtocolRun, Summary};
use crate::scenario::Protocol;
use std::fmt::Write as _;

/// The protocols in the order they first ran, each with its runs.
fn by_protocol(summary: &Summary) -> Vec<(Protocol, Vec<&ProtocolRun>)> {
    let mut groups: Vec<(Protocol, Vec<&ProtocolRun>)> = Vec::new();
    for run in &summary.runs {
        let Some(protocol) = run.protocol else {
            continue;
        };
        match groups.iter_mut().find(|(p, _)| *p == protocol) {
            Some((_, runs)) => runs.push(run),
            None => groups.push((protocol, vec![run])),
        }
    }
    groups
}

/// A latency quantile of every outcome, only from runs with enough samples behind it.
fn quantile(
    run: &ProtocolRun,
    q: fn(&crate::report::summary::Percentiles) -> f64,
    min_n: u64,
) -> Option<f64> {
    let all = run.latency.get("ALL")?;
    (all.n >= min_n).then(|| q(all))
}

/// The section, or nothing when every protocol ran once.
pub(super) fn section(summary: &Summary) -> String {
    if summary.runs.iter().all(|r| r.repetition.is_none()) {
        return String::new();
    }
    let mut md = String::new();
    let _ = writeln!(md, "## Over the repetitions\n");
    let _ = writeln!(md, "Each figure is the median of the protocol's runs, with the smallest and largest in brackets. The runs were interleaved (every protocol once, then again), each on a freshly seeded copy of the same data set, with the floors measured again before each. Violations and leftovers are totals over the runs. A p99 is taken only from runs with 100 answers or more.\n");
    let _ = writeln!(md, "| protocol | runs | offered/s | committed/s | availability % | p50 (ms) | p99 (ms) | committed p50 / floor | CPU ms per committed order | violations | leftovers |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (protocol, runs) in by_protocol(summary) {
        let spread =
            |f: &dyn Fn(&ProtocolRun) -> Option<f64>| Spread::of(runs.iter().filter_map(|r| f(r)));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            protocol.name(),
            runs.len(),
            Spread::show(spread(&|r| r.offered_per_s), 1),
            Spread::show(spread(&|r| Some(r.committed_per_s)), 1),
            Spread::show(spread(&|r| Some(100.0 * r.availability)), 1),
            Spread::show(spread(&|r| quantile(r, |p| p.p50, 1)), 2),
            Spread::show(spread(&|r| quantile(r, |p| p.p99, 100)), 2),
            Spread::show(spread(&|r| r.p50_over_floor), 1),
            Spread::show(
                spread(&|r| {
                    (!r.cpu_ms_per_commit.is_empty()).then(|| r.cpu_ms_per_commit.values().sum())
                }),
                2
            ),
            runs.iter().map(|r| r.check.violations.len()).sum::<usize>(),
            runs.iter().map(|r| r.check.leftovers.len()).sum::<usize>(),
        );
    }
    let _ = writeln!(md);
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_protocol_over_its_runs() {
        let run = |protocol, k, committed_per_s| ProtocolRun {
            protocol: Some(protocol),
            repetition: Some(k),
            committed_per_s,
            ..ProtocolRun::default()
        };
        let summary = Summary {
            command: String::new(),
            started_at: String::new(),
            scenario: None,
            environment: Default::default(),
            floors: Default::default(),
            kafka_tuning: Default::default(),
            runs: vec![
                run(Protocol::Twopc, 1, 40.0),
                run(Protocol::SagaChoreographed, 1, 30.0),
                run(Protocol::Twopc, 2, 38.0),
                run(Protocol::SagaChoreographed, 2, 31.0),
                run(Protocol::Twopc, 3, 41.0),
                run(Protocol::SagaChoreographed, 3, 29.0),
            ],
        };
        let md = section(&summary);
        assert!(md.contains("| twopc | 3 | – | 40.0 (38.0–41.0) |"), "{md}");
        assert!(
            md.contains("| saga-choreographed | 3 | – | 30.0 (29.0–31.0) |"),
            "{md}"
        );
    }
}
