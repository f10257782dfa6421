//! Plain-text summaries for the terminal.

use crate::run::RunReport;
use common::domain::OutcomeKind;
use common::metrics::decode;
use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// `p50 p90 p99 p99.9 max` of a histogram in microseconds, as milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "n={:<6} p50={:>8.2} p90={:>8.2} p99={:>8.2} p99.9={:>8.2} max={:>8.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

pub fn run_report(report: &RunReport) -> String {
    let mut out = String::new();
    let load = &report.load;
    let secs = load.elapsed.as_secs_f64();
    let committed = load.count(OutcomeKind::Committed);
    let _ = writeln!(
        out,
        "environment started in {:.1} s",
        report.env_start.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "measured {:.1} s: {:.0} committed orders/s, {:.0} answers/s",
        secs,
        committed as f64 / secs,
        load.all().len() as f64 / secs
    );
    let _ = writeln!(
        out,
        "latency, all outcomes     {}",
        percentiles(&load.all())
    );
    for (kind, h) in &load.latency {
        let _ = writeln!(out, "latency, {:<16} {}", kind.as_str(), percentiles(h));
    }
    if !load.errors.is_empty() {
        let _ = writeln!(out, "requests without an outcome: {:?}", load.errors);
    }
    for snapshot in &report.services {
        let histograms = decode(snapshot).unwrap_or_default();
        for (name, h) in &histograms {
            let _ = writeln!(
                out,
                "{:<22} {:<14} {}",
                snapshot.service,
                name,
                percentiles(h)
            );
        }
        if !snapshot.maxima.is_empty() {
            let _ = writeln!(
                out,
                "{:<22} maxima (µs)    {:?}",
                snapshot.service, snapshot.maxima
            );
        }
        let _ = writeln!(
            out,
            "{:<22} counters       {:?}",
            snapshot.service, snapshot.counters
        );
    }
    for line in report.check.describe() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "checker: {} violations, {} leftovers ({} orders confirmed)",
        report.check.violations.len(),
        report.check.leftovers.len(),
        report.check.counts.orders_confirmed
    );
    out
}
