//! The report's fault parts: each protocol's timeline with its faults shaded as they really
//! held, and the table of what each fault did to availability, recovery and settling.

use super::report_err;
use crate::report::plots::{self, Series, Window};
use crate::report::summary::Summary;
use crate::run::faults::schedule::FaultSpec;
use crate::LoadgenError;
use std::fmt::Write as _;
use std::path::Path;

/// `faults-<protocol>.svg` for every run with faults: committed/s and availability %, each fault
/// shaded from when it was applied to when it was healed (a restart can take longer than
/// scheduled). `throughput` and `availability` hold one series per run, in run order.
pub(super) fn plots(
    dir: &Path,
    summary: &Summary,
    throughput: &[Series],
    availability: &[Series],
) -> Result<(), LoadgenError> {
    let schedule: &[FaultSpec] = summary.scenario.as_ref().map_or(&[], |s| &s.faults[..]);
    for (run, (committed, available)) in summary
        .runs
        .iter()
        .zip(throughput.iter().zip(availability))
        .filter(|(r, _)| !r.faults.is_empty())
    {
        // Records come in schedule order, one per scheduled fault.
        let real: Vec<Window> = schedule
            .iter()
            .zip(&run.faults)
            .filter_map(|(spec, record)| {
                Some(Window {
                    from: record.applied_s?,
                    to: record.healed_s?,
                    label: spec.what(),
                })
            })
            .collect();
        let name = committed.name;
        plots::timeline(
            &dir.join(format!("faults-{}.svg", run.file_stem())),
            &format!("{name}: committed/s and availability %, faults shaded as they really held"),
            "orders/s, %",
            &[
                Series {
                    name: "committed/s",
                    points: committed.points.clone(),
                },
                Series {
                    name: "available %",
                    points: available.points.clone(),
                },
            ],
            &real,
        )
        .map_err(report_err)?;
    }
    Ok(())
}

/// The fault schedule as it happened under each protocol: availability of the orders scheduled
/// inside each window and the time to recover after healing.
pub(super) fn section(summary: &Summary) -> String {
    let mut md = String::new();
    if summary.runs.iter().all(|r| r.faults.is_empty()) {
        return md;
    }
    let _ = writeln!(md, "## Faults\n");
    let _ = writeln!(md, "Shaded in the throughput and availability plots. Every link of these runs went through a fault proxy (DESIGN §5). *Availability in window*: orders scheduled inside the window answered COMMITTED or REJECTED within the deadline. Windows are scored from when each fault was actually applied to when it was actually healed (a restart can take longer than scheduled). *Recovery*: seconds from the actual heal until three seconds in a row are again ≥ 99 % available (fewer when the next fault or the end of the run comes first; *not before the next fault or the end* when it never did). *All begun before the heal final*: from the heal until the databases hold no PENDING order and no prepared 2PC branch begun before it (sagas compensated or completed, in-doubt branches resolved).\n");
    let _ = writeln!(md, "| protocol | fault | availability in window | orders in window | recovery after heal | all begun before the heal final after | what was done |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for r in &summary.runs {
        for f in &r.faults {
            let (availability, recovery, settled) = if f.applies {
                (
                    f.availability_in_window
                        .map_or("–".into(), |a| format!("{:.1} %", 100.0 * a)),
                    f.recovery_s
                        .map_or("not before the next fault or the end".into(), |s| {
                            format!("{s} s")
                        }),
                    f.settled_after_heal_s
                        .map_or("not within 120 s".into(), |s| format!("{s:.1} s")),
                )
            } else {
                ("does not apply".into(), "–".into(), "–".into())
            };
            let what = match &f.error {
                Some(e) => format!("{} — **{e}**", f.note),
                None => f.note.clone(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {availability} | {} | {recovery} | {settled} | {what} |",
                r.label(),
                f.label,
                f.scheduled_in_window,
            );
        }
    }
    md.push_str("\nA crashed process restarts with empty histograms and counters: the figures below add those it gave just before the kill (read at the scheduled second, the kill follows within milliseconds) to those of its life after the restart.\n\n");
    // How long a 2PC participant stayed blocked: its longest-held prepared branch.
    for r in &summary.runs {
        let blocked: Vec<String> = r
            .services
            .iter()
            .filter_map(|s| {
                let us = s.maxima.get("prepared_max")?;
                Some(format!("{} {:.0} ms", s.service, *us as f64 / 1000.0))
            })
            .collect();
        if !blocked.is_empty() {
            let _ = writeln!(
                md,
                "Longest a {} participant held a prepared branch (blocked, locks held): {}.\n",
                r.label(),
                blocked.join(", ")
            );
            // Branches that heard no decision in time and had to ask the coordinator for it.
            let in_doubt: Vec<String> = r
                .services
                .iter()
                .filter(|s| s.maxima.contains_key("prepared_max"))
                .map(|s| {
                    let n = s.histograms.get("in_doubt").map_or(0, |h| h.n);
                    format!("{} {n}", s.service)
                })
                .collect();
            let _ = writeln!(
                md,
                "Branches in doubt (no decision in time, resolved by asking the coordinator): {}.\n",
                in_doubt.join(", ")
            );
        }
    }
    md
}
