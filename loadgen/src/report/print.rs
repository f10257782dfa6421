//! Plain-text summaries for the terminal.

use crate::report::summary::Summary;
use std::fmt::Write as _;

/// One line per protocol: offered and achieved throughput, availability, latency of every
/// answered order, checker verdict.
pub fn summary(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>10} {:>12} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}",
        "protocol",
        "offered/s",
        "committed/s",
        "avail %",
        "n",
        "p50 ms",
        "p99 ms",
        "max ms",
        "/floor",
        "violations",
        "leftovers"
    );
    for r in &summary.runs {
        // Every outcome, as the report's headline.
        let all = r.latency.get("ALL").cloned().unwrap_or_default();
        let [p50, _, p99, _, max] = all.cells();
        let _ = writeln!(
            out,
            "{:<20} {:>10} {:>12.1} {:>9.1} {:>8} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}",
            r.label(),
            r.offered_per_s.map_or("–".into(), |o| format!("{o:.1}")),
            r.committed_per_s,
            100.0 * r.availability,
            all.n,
            p50,
            p99,
            max,
            r.p50_over_floor.map_or("–".into(), |x| format!("{x:.1}x")),
            r.check.violations.len(),
            r.check.leftovers.len()
        );
        for line in r.check.describe().iter().take(20) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}
