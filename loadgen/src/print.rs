//! Plain-text summaries for the terminal.

use crate::summary::Summary;
use std::fmt::Write as _;

/// One line per protocol: throughput, availability, committed latency, checker verdict.
pub fn summary(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}",
        "protocol",
        "committed/s",
        "avail %",
        "p50 ms",
        "p99 ms",
        "max ms",
        "/floor",
        "violations",
        "leftovers"
    );
    for r in &summary.runs {
        let c = r.latency.get("COMMITTED").cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<20} {:>12.1} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>10} {:>9}",
            r.protocol.map_or("?", |p| p.name()),
            r.committed_per_s,
            100.0 * r.availability,
            c.p50,
            c.p99,
            c.max,
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
