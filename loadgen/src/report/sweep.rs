//! A sweep's report: per offered rate the median and spread over its runs, every run with its
//! cost and slowest second, and `sweep.svg` (latency against achieved throughput).

use super::raw::timeline_csv;
use super::{per_s, produced_by, report_err};
use crate::report::plots::{self, Series};
use crate::report::spread::Spread;
use crate::report::summary::{Percentiles, Summary};
use crate::LoadgenError;
use std::fmt::Write as _;
use std::path::Path;

/// Per offered rate, the median and min–max over its runs of what a reader compares.
fn sweep_medians(summary: &Summary) -> String {
    let mut rates: Vec<f64> = summary.runs.iter().filter_map(|r| r.offered_rate).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let mut md = String::new();
    let _ = writeln!(md, "Median over each rate's runs, min–max in brackets; achieved throughput counts commits answered inside the window.\n");
    let _ = writeln!(md, "| offered/s | runs | committed/s | availability (%) | committed p50 (ms) | committed p99 (ms) | CPU ms per order |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for rate in rates {
        let at: Vec<&crate::report::summary::ProtocolRun> = summary
            .runs
            .iter()
            .filter(|r| r.offered_rate == Some(rate))
            .collect();
        let spread = |f: &dyn Fn(&crate::report::summary::ProtocolRun) -> Option<f64>,
                      digits: usize| {
            Spread::show(Spread::of(at.iter().filter_map(|r| f(r))), digits)
        };
        let offered = at
            .iter()
            .filter_map(|r| r.offered_per_s)
            .next()
            .unwrap_or(rate);
        let _ = writeln!(
            md,
            "| {offered:.1} | {} | {} | {} | {} | {} | {} |",
            at.len(),
            spread(&|r| Some(r.committed_per_s), 1),
            spread(&|r| Some(100.0 * r.availability), 1),
            spread(&|r| r.latency.get("COMMITTED").map(|p| p.p50), 2),
            spread(&|r| r.latency.get("COMMITTED").map(|p| p.p99), 1),
            spread(
                &|r| {
                    let cpu: f64 = r.cpu_ms_per_commit.values().sum();
                    (cpu > 0.0).then_some(cpu)
                },
                1
            ),
        );
    }
    md
}

/// A sweep's folder: summary.json, timeline.csv, `sweep.svg` (committed p50 and p99 against
/// committed orders per second: the knee is where latency leaves the floor) and report.md.
pub fn write_sweep(dir: &Path, summary: &Summary) -> Result<(), LoadgenError> {
    std::fs::create_dir_all(dir).map_err(report_err)?;
    let json = serde_json::to_string_pretty(summary).map_err(report_err)?;
    std::fs::write(dir.join("summary.json"), json).map_err(report_err)?;
    std::fs::write(dir.join("timeline.csv"), timeline_csv(summary)).map_err(report_err)?;
    let point = |r: &crate::report::summary::ProtocolRun, f: fn(&Percentiles) -> f64| {
        (r.committed_per_s, r.latency.get("COMMITTED").map_or(0.0, f))
    };
    // One point per offered rate, in rate order (past the knee achieved throughput falls
    // while the offered rate rises, and the line must bend back): with repetitions, the
    // medians of that rate's runs.
    let points = |f: fn(&Percentiles) -> f64| {
        let mut rates: Vec<f64> = summary.runs.iter().filter_map(|r| r.offered_rate).collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        rates
            .iter()
            .filter_map(|rate| {
                let at: Vec<(f64, f64)> = summary
                    .runs
                    .iter()
                    .filter(|r| r.offered_rate == Some(*rate))
                    .map(|r| point(r, f))
                    .collect();
                let x = Spread::of(at.iter().map(|p| p.0))?.median;
                let y = Spread::of(at.iter().map(|p| p.1))?.median;
                Some((x, y))
            })
            .collect::<Vec<_>>()
    };
    let series = [
        Series {
            name: "committed p50",
            points: points(|p| p.p50),
        },
        Series {
            name: "committed p99",
            points: points(|p| p.p99),
        },
    ];
    plots::lines(
        &dir.join("sweep.svg"),
        "Latency against achieved throughput",
        "committed orders/s (by completion, inside the window)",
        "ms",
        &series,
        &[],
    )
    .map_err(report_err)?;

    let mut md = String::new();
    let protocol = summary
        .runs
        .first()
        .and_then(|r| r.protocol)
        .map_or("?", |p| p.name());
    let _ = writeln!(md, "# txlab sweep: {protocol}\n");
    let _ = writeln!(md, "{}\n", produced_by(summary));
    md.push_str(&sweep_medians(summary));
    let _ = writeln!(md, "\n## Every run\n");
    let _ = writeln!(md, "*CPU*: milliseconds of CPU of every process of the run per order committed inside the window. *Slowest second*: the window's second with the worst client p99 (every outcome), with the WAL PostgreSQL wrote in it and its busiest process (see a run's report for the columns' definitions).\n");
    let _ = writeln!(md, "| offered/s | run | committed/s | availability | committed p50 / p99 (ms) | p50 / floor | CPU ms per order | slowest second: p99 ms, WAL MB, busiest | violations | leftovers | dropped |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<&crate::report::summary::ProtocolRun> = summary.runs.iter().collect();
    runs.sort_by(|a, b| {
        a.offered_rate
            .unwrap_or(0.0)
            .total_cmp(&b.offered_rate.unwrap_or(0.0))
            .then(a.repetition.cmp(&b.repetition))
    });
    for r in runs {
        let c = r.latency.get("COMMITTED").cloned().unwrap_or_default();
        let cpu: f64 = r.cpu_ms_per_commit.values().sum();
        let slowest = r.slowest_second.as_ref().map_or("–".into(), |s| {
            format!(
                "{:.0} at s {}, {}, {}",
                s.p99_ms,
                s.second,
                s.wal_bytes
                    .map_or("–".into(), |b| format!("{:.2}", b as f64 / 1e6)),
                s.busiest.as_ref().map_or("–", |(p, _)| p.as_str())
            )
        });
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} % | {} / {} | {} | {} | {slowest} | {} | {} | {} |",
            per_s(r.offered_per_s.or(r.offered_rate)),
            r.repetition.map_or("1".into(), |k| k.to_string()),
            r.committed_per_s,
            100.0 * r.availability,
            c.cells()[0],
            c.cells()[2],
            r.p50_over_floor.map_or("–".into(), |x| format!("{x:.1}×")),
            if cpu > 0.0 {
                format!("{cpu:.1}")
            } else {
                "–".into()
            },
            r.check.violations.len(),
            r.check.leftovers.len(),
            r.dropped_at_cap
        );
    }
    let _ = writeln!(md, "\n![sweep](sweep.svg)\n\nEvery figure per rate is in `summary.json`; per second in `timeline.csv`.");
    std::fs::write(dir.join("report.md"), md).map_err(report_err)
}
