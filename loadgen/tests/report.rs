//! The report renders: every SVG parses as XML, report.md has the side-by-side table, the
//! HdrHistogram log reads back, and summary.json round-trips.

use common::domain::OutcomeKind;
use common::metrics::{new_histogram, record};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use loadgen::experiment::Measured;
use loadgen::open_loop::SecondBucket;
use loadgen::scenario::Protocol;
use loadgen::summary::{Percentiles, ProtocolRun, Summary};
use std::collections::BTreeMap;
use std::time::Duration;

fn measured(protocol: Protocol, scale: u64) -> Measured {
    let mut committed = new_histogram();
    let mut hold = new_histogram();
    for v in 1..=1_000u64 {
        record(&mut committed, Duration::from_micros(v * scale));
        record(&mut hold, Duration::from_micros(v * scale / 2 + 1));
    }
    let run = ProtocolRun {
        protocol: Some(protocol),
        measured_s: 10.0,
        started: 1_000,
        offered_per_s: Some(100.0),
        committed_per_s: 100.0,
        availability: 1.0,
        latency: [
            ("COMMITTED".to_string(), Percentiles::of(&committed)),
            ("ALL".to_string(), Percentiles::of(&committed)),
        ]
        .into(),
        p50_over_floor: Some(2.5),
        floor_ms: Some(1.0),
        timeline: (0..10)
            .map(|s| SecondBucket {
                second: s,
                scheduled: 100,
                committed: 100,
                available: 100,
                committed_by_completion: 100,
                ..SecondBucket::default()
            })
            .collect(),
        ..ProtocolRun::default()
    };
    let services = [(
        "participant/payment".to_string(),
        [("lock_hold".to_string(), hold)].into(),
    )]
    .into();
    Measured {
        run,
        latency: [(OutcomeKind::Committed, committed)].into(),
        service_histograms: services,
    }
}

#[test]
fn report_renders_and_svgs_parse() {
    let dir = std::env::temp_dir().join(format!("txlab-report-{}", uuid::Uuid::new_v4().simple()));
    let runs = vec![
        measured(Protocol::Twopc, 10),
        measured(Protocol::SagaChoreographed, 30),
    ];
    let summary = Summary {
        command: "loadgen compare --scenario quick".into(),
        started_at: "2026-11-23T00:00:00Z".into(),
        runs: runs.iter().map(|m| m.run.clone()).collect(),
        ..Summary::default()
    };
    loadgen::report::write(&dir, &summary, &runs).unwrap();

    for svg in ["latency", "throughput", "availability", "locks", "floor"] {
        let text = std::fs::read_to_string(dir.join(format!("{svg}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{svg}.svg does not parse: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(
            doc.descendants().filter(|n| n.is_element()).count() > 10,
            "{svg}.svg draws something"
        );
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| twopc | 100.0 | 100.0 | 100.0 % | 1000 |"),
        "offered, achieved, availability and n lead the row: {md}"
    );
    let by_outcome = md
        .split("## Outcomes and latency by outcome")
        .nth(1)
        .unwrap();
    assert!(
        by_outcome.find("| twopc | ALL |") < by_outcome.find("| twopc | COMMITTED |"),
        "every outcome first: {by_outcome}"
    );
    assert!(
        md.contains("| saga-choreographed |") && md.contains("loadgen compare --scenario quick")
    );

    let back: Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(back, summary);

    let log = std::fs::read(dir.join("twopc.hlog")).unwrap();
    let intervals: Vec<_> = IntervalLogIterator::new(&log)
        .filter_map(|e| match e.unwrap() {
            LogEntry::Interval(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(intervals.len(), 1);
    assert_eq!(
        intervals[0].tag().map(|t| t.as_str().to_string()),
        Some("COMMITTED".to_string())
    );
    let csv = std::fs::read_to_string(dir.join("timeline.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 20,
        "a header and ten seconds per protocol"
    );
    let _: BTreeMap<String, u64> = back.runs[0].outcomes.clone();
    std::fs::remove_dir_all(&dir).unwrap();
}
