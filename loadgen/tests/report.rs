//! The report renders: every SVG parses as XML, report.md has the side-by-side table, the
//! HdrHistogram log reads back, and summary.json round-trips.

use common::domain::OutcomeKind;
use common::metrics::{new_histogram, record};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use loadgen::load::intervals::Intervals;
use loadgen::load::recorder::SecondBucket;
use loadgen::report::summary::{Percentiles, ProtocolRun, Summary};
use loadgen::run::experiment::Measured;
use loadgen::scenario::Protocol;
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
    // The same answers spread over the ten seconds of the run, 100 a second.
    let mut intervals = Intervals::new(1_795_000_000_000_000);
    for v in 1..=1_000u64 {
        intervals.record(
            Duration::from_millis(v % 10 * 1_000 + 500),
            OutcomeKind::Committed,
            Duration::from_micros(v * scale),
        );
    }
    Measured {
        run,
        latency: [(OutcomeKind::Committed, committed)].into(),
        intervals,
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
    assert_eq!(intervals.len(), 10, "one interval per second");
    for (second, interval) in intervals.iter().enumerate() {
        assert_eq!(
            interval.tag().map(|t| t.as_str().to_string()),
            Some("COMMITTED".to_string())
        );
        assert_eq!(
            interval.start_timestamp(),
            Duration::from_secs(second as u64)
        );
        assert_eq!(interval.duration(), Duration::from_secs(1));
    }
    let csv = std::fs::read_to_string(dir.join("timeline.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 20,
        "a header and ten seconds per protocol"
    );
    let _: BTreeMap<String, u64> = back.runs[0].outcomes.clone();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// HdrHistogram's own Java `HistogramLogProcessor` (the jar ships with the lab's Kafka, from
/// Maven Central) reads every interval of the log back, with the counts and maximum written.
#[test]
fn the_reference_implementation_reads_the_interval_log() {
    let dir = std::env::temp_dir().join(format!("txlab-hlog-{}", uuid::Uuid::new_v4().simple()));
    let runs = vec![measured(Protocol::Twopc, 10)];
    let summary = Summary {
        runs: runs.iter().map(|m| m.run.clone()).collect(),
        ..Summary::default()
    };
    loadgen::report::write(&dir, &summary, &runs).unwrap();
    let libs = common::env::kafka::default_libs_dir();
    let jar = std::fs::read_dir(&libs)
        .unwrap_or_else(|e| panic!("{} unreadable ({e}): run scripts/setup.sh", libs.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("HdrHistogram-") && n.ends_with(".jar"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no HdrHistogram jar in {}: run scripts/setup.sh",
                libs.display()
            )
        });
    let out = dir.join("committed");
    let processed = std::process::Command::new("java")
        .arg("-cp")
        .arg(&jar)
        .arg("org.HdrHistogram.HistogramLogProcessor")
        .arg("-i")
        .arg(dir.join("twopc.hlog"))
        .arg("-o")
        .arg(&out)
        .args(["-tag", "COMMITTED", "-csv", "-outputValueUnitRatio", "1000"])
        .output()
        .expect("java runs (scripts/setup.sh installs it)");
    assert!(
        processed.status.success(),
        "HistogramLogProcessor failed: {}",
        String::from_utf8_lossy(&processed.stderr)
    );
    // CSV rows after two comment lines and a header: the interval's end (s), its count, its
    // p50, p90 and max, then the running totals (count, p50, …, max), in ms.
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 10, "one interval per second: {text}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row[0],
            (i + 1) as f64,
            "interval ends a second apart: {text}"
        );
        assert_eq!(row[1], 100.0, "100 answers a second: {text}");
    }
    let last = rows.last().unwrap();
    assert_eq!(last[5], 1_000.0, "every answer read back: {text}");
    let ours = &summary.runs[0].latency["COMMITTED"];
    assert!(
        (last[6] - ours.p50).abs() < 0.01,
        "Java's p50 {} ms is ours, {} ms",
        last[6],
        ours.p50
    );
    assert!(
        (last[11] - ours.max).abs() < 0.02,
        "Java's max {} ms is ours, {} ms",
        last[11],
        ours.max
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With `--repeat`, every run keeps its own files and rows, and the report adds the spread.
#[test]
fn repeated_runs_keep_their_own_files_and_the_report_gives_the_spread() {
    let dir = std::env::temp_dir().join(format!("txlab-repeat-{}", uuid::Uuid::new_v4().simple()));
    let runs: Vec<Measured> = [(Protocol::Twopc, 1), (Protocol::Twopc, 2)]
        .into_iter()
        .map(|(p, k)| {
            let mut m = measured(p, 10 * k);
            m.run.repetition = Some(k as u32);
            m
        })
        .collect();
    let summary = Summary {
        runs: runs.iter().map(|m| m.run.clone()).collect(),
        ..Summary::default()
    };
    loadgen::report::write(&dir, &summary, &runs).unwrap();
    for file in ["twopc-1.hlog", "twopc-2.hlog", "latency.svg"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("| twopc #1 |") && md.contains("| twopc #2 |"),
        "{md}"
    );
    assert!(md.contains("## Over the repetitions"), "{md}");
    assert!(md.contains("| twopc | 2 | 100.0 (100.0–100.0) |"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}
