//! The report's resource parts: each protocol's CPU per process over the window, under the
//! throughput timeline, and the cost table (CPU milliseconds per committed order per process,
//! peak memory, WAL written, checkpoints and when they ran).

use super::report_err;
use crate::report::plots::{self, Series, Window};
use crate::report::summary::{ProtocolRun, Summary};
use crate::LoadgenError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// `resources-<protocol>.svg`: CPU per process, in % of one core, each second of the window.
pub(super) fn plots(dir: &Path, summary: &Summary, windows: &[Window]) -> Result<(), LoadgenError> {
    for run in summary.runs.iter().filter(|r| !r.resources.is_empty()) {
        let (name, stem) = (run.label(), run.file_stem());
        let processes = processes(run);
        let series: Vec<Series> = processes
            .iter()
            .map(|process| Series {
                name: process,
                points: run
                    .resources
                    .iter()
                    .map(|s| {
                        let ms = s.cpu_ms.get(*process).copied().unwrap_or(0);
                        (s.second as f64, ms as f64 / 10.0)
                    })
                    .collect(),
            })
            .collect();
        plots::timeline(
            &dir.join(format!("resources-{stem}.svg")),
            &format!("{name}: CPU per process (% of one core)"),
            "% of a core",
            &series,
            windows,
        )
        .map_err(report_err)?;
    }
    Ok(())
}

fn processes(run: &ProtocolRun) -> Vec<&str> {
    let names: BTreeSet<&str> = run
        .resources
        .iter()
        .flat_map(|s| s.cpu_ms.keys().map(String::as_str))
        .collect();
    names.into_iter().collect()
}

/// Each run's slowest second beside what the machine did in it.
fn slowest_seconds(runs: &[&ProtocolRun]) -> String {
    let mut md = String::new();
    let rows: Vec<_> = runs
        .iter()
        .filter_map(|r| Some((name(r), r.slowest_second.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return md;
    }
    let _ = writeln!(md, "\n### The slowest second of each run\n");
    let _ = writeln!(md, "The second of the window whose answers (every outcome, at least 20) had the highest p99, against the median second's; beside it what the resource sampler saw in that second. A tail that one second makes, with a WAL burst or a checkpoint in it, is the database's pause, not the protocol's; one with a process at a full core is CPU starvation.\n");
    let _ = writeln!(md, "| protocol | second | answers | p99 (ms) | median second's p99 (ms) | WAL (MB; median second) | checkpoints | busiest process (ms of CPU) |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (label, s) in rows {
        let mb = |b: Option<u64>| b.map_or("–".into(), |b| format!("{:.2}", b as f64 / 1e6));
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {:.1} | {:.1} | {} ({}) | {} | {} |",
            s.second,
            s.answers,
            s.p99_ms,
            s.typical_p99_ms,
            mb(s.wal_bytes),
            mb(s.typical_wal_bytes),
            s.checkpoints.map_or("–".into(), |c| c.to_string()),
            s.busiest
                .as_ref()
                .map_or("–".into(), |(p, ms)| format!("{p} ({ms})"))
        );
    }
    md
}

/// The cost table and what PostgreSQL did in the window, per protocol.
pub(super) fn section(summary: &Summary) -> String {
    let mut md = String::new();
    let runs: Vec<&ProtocolRun> = summary
        .runs
        .iter()
        .filter(|r| !r.resources.is_empty())
        .collect();
    if runs.is_empty() {
        return md;
    }
    let _ = writeln!(md, "## Resources\n");
    let _ = writeln!(md, "Sampled once a second from /proc over the measured window: CPU time (user + system, reaped children included) of each process of the run, a restarted process staying in its line; `loadgen` includes the fault proxies, `postgres` every backend. *CPU ms per commit*: the window's CPU time over the orders committed inside it — the cost to carry to another machine. WAL and checkpoints from `pg_stat_wal` and `pg_stat_bgwriter` (the whole cluster). Peak RSS sums each line's processes, so shared memory (PostgreSQL's shared buffers) counts once per backend that touched it: an upper bound.\n");
    let all: BTreeSet<&str> = runs.iter().flat_map(|r| processes(r)).collect();
    let _ = write!(md, "| protocol | total |");
    for p in &all {
        let _ = write!(md, " {p} |");
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "|---|---|{}", "---|".repeat(all.len()));
    for run in &runs {
        let total: f64 = run.cpu_ms_per_commit.values().sum();
        let _ = write!(md, "| {} | {total:.2} |", name(run));
        for p in &all {
            let cell = run
                .cpu_ms_per_commit
                .get(*p)
                .map_or("–".into(), |ms| format!("{ms:.2}"));
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "\nCPU milliseconds per committed order.\n");
    let _ = writeln!(
        md,
        "| protocol | peak RSS (MiB) | WAL written (MiB) | checkpoints | in seconds | checkpoint write+sync (ms) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for run in &runs {
        let mut peak: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &run.resources {
            for (p, mib) in &s.rss_mib {
                let e = peak.entry(p.as_str()).or_default();
                *e = (*e).max(*mib);
            }
        }
        let peaks: Vec<String> = peak.iter().map(|(p, m)| format!("{p} {m}")).collect();
        let wal: u64 = run.resources.iter().filter_map(|s| s.wal_bytes).sum();
        let checkpoints: u64 = run.resources.iter().filter_map(|s| s.checkpoints).sum();
        let at: Vec<String> = run
            .resources
            .iter()
            .filter(|s| s.checkpoints.unwrap_or(0) > 0)
            .map(|s| s.second.to_string())
            .collect();
        let spent: u64 = run.resources.iter().filter_map(|s| s.checkpoint_ms).sum();
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {checkpoints} | {} | {spent} |",
            name(run),
            peaks.join(", "),
            wal as f64 / (1u64 << 20) as f64,
            if at.is_empty() {
                "–".into()
            } else {
                at.join(", ")
            },
        );
    }
    md.push_str(&slowest_seconds(&runs));
    for run in &runs {
        let _ = writeln!(
            md,
            "\n![resources {}](resources-{}.svg)",
            run.label(),
            run.file_stem()
        );
    }
    let _ = writeln!(md);
    md
}

fn name(run: &ProtocolRun) -> String {
    run.label()
}
