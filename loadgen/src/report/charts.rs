//! The run's SVG figures, drawn from its summary and raw histograms with the primitives of
//! [`super::plots`].

use super::plots::{self, Series, Window};
use super::{faults, is_lock_figure, report_err, resources};
use crate::report::summary::Summary;
use crate::run::experiment::Measured;
use crate::LoadgenError;
use std::path::Path;

/// Committed latency per protocol, in the order they ran: with repetitions, the runs of a
/// protocol merged into one distribution ("twopc, 3 runs"); each run's own is in its .hlog.
fn committed_by_protocol(measured: &[Measured]) -> Vec<(String, hdrhistogram::Histogram<u64>)> {
    let mut merged: Vec<(
        Option<crate::scenario::Protocol>,
        usize,
        hdrhistogram::Histogram<u64>,
    )> = Vec::new();
    for m in measured {
        let Some(h) = m.latency.get(&common::domain::OutcomeKind::Committed) else {
            continue;
        };
        match merged.iter_mut().find(|(p, _, _)| *p == m.run.protocol) {
            Some((_, runs, all)) => {
                all.add(h).expect("same bounds");
                *runs += 1;
            }
            None => merged.push((m.run.protocol, 1, h.clone())),
        }
    }
    let repeated = measured.iter().any(|m| m.run.repetition.is_some());
    merged
        .into_iter()
        .map(|(p, runs, h)| {
            let name = p.map_or("unknown", |p| p.name());
            let label = if repeated {
                format!("{name}, {runs} runs")
            } else {
                name.to_string()
            };
            (label, h)
        })
        .collect()
}

pub(super) fn write_plots(
    dir: &Path,
    summary: &Summary,
    measured: &[Measured],
) -> Result<(), LoadgenError> {
    let by_protocol = committed_by_protocol(measured);
    let committed: Vec<(&str, &hdrhistogram::Histogram<u64>)> = by_protocol
        .iter()
        .map(|(name, h)| (name.as_str(), h))
        .collect();
    plots::latency_distribution(
        &dir.join("latency.svg"),
        "Latency of committed orders",
        &committed,
    )
    .map_err(report_err)?;
    let labels: Vec<String> = summary.runs.iter().map(|r| r.label()).collect();

    let per_second = |f: fn(&crate::load::recorder::SecondBucket) -> f64| -> Vec<Series> {
        summary
            .runs
            .iter()
            .zip(&labels)
            .map(|(r, label)| Series {
                name: label,
                points: r.timeline.iter().map(|b| (b.second as f64, f(b))).collect(),
            })
            .collect()
    };
    // Fault windows as scheduled (the same for every protocol) on the shared plots; each
    // protocol's own plots below shade them at its real applied→healed times.
    let windows: Vec<Window> = summary
        .scenario
        .iter()
        .flat_map(|s| &s.faults)
        .map(|f| Window {
            from: f.at_s as f64,
            to: f.ends_at_s() as f64,
            label: f.what(),
        })
        .collect();
    let throughput = per_second(|b| b.committed_by_completion as f64);
    plots::timeline(
        &dir.join("throughput.svg"),
        "Committed orders per second (by completion: a stall is a dip)",
        "orders/s",
        &throughput,
        &windows,
    )
    .map_err(report_err)?;
    let availability = per_second(|b| {
        // `scheduled` counts every order due that second, dropped ones included.
        let offered = b.scheduled.max(1) as f64;
        100.0 * b.available as f64 / offered
    });
    plots::timeline(
        &dir.join("availability.svg"),
        "Availability per second (answered COMMITTED or REJECTED within the deadline)",
        "%",
        &availability,
        &windows,
    )
    .map_err(report_err)?;
    faults::plots(dir, summary, &throughput, &availability)?;
    resources::plots(dir, summary, &windows)?;

    // Every lock figure's whole distribution, one line per process and kind; a protocol's
    // repeated runs merged into one line, as in latency.svg.
    let mut locks: Vec<(String, hdrhistogram::Histogram<u64>)> = Vec::new();
    for m in measured {
        for (service, histograms) in &m.service_histograms {
            // Saga processes already name themselves after their mode.
            let protocol = m.run.protocol.map_or("unknown", |p| p.name());
            let who = if service.starts_with(protocol) {
                service.clone()
            } else {
                format!("{protocol} {service}")
            };
            for (name, h) in histograms.iter().filter(|(n, _)| is_lock_figure(n)) {
                let line = format!("{who} {name}");
                match locks.iter_mut().find(|(l, _)| *l == line) {
                    Some((_, all)) => all.add(h).expect("same bounds"),
                    None => locks.push((line, h.clone())),
                }
            }
        }
    }
    let locks: Vec<(&str, &hdrhistogram::Histogram<u64>)> =
        locks.iter().map(|(line, h)| (line.as_str(), h)).collect();
    plots::latency_distribution(
        &dir.join("locks.svg"),
        "Lock hold and in-doubt time by percentile",
        &locks,
    )
    .map_err(report_err)?;

    let over_floor: Vec<(String, f64)> = summary
        .runs
        .iter()
        .filter_map(|r| Some((r.label(), r.p50_over_floor?)))
        .collect();
    plots::bars(
        &dir.join("floor.svg"),
        "Committed p50 latency / the protocol's floor",
        "× floor",
        &over_floor,
        1,
    )
    .map_err(report_err)?;
    Ok(())
}
