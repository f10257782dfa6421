//! The raw data beside the report: `timeline.csv` (every second of every run) and one
//! HdrHistogram interval log per run, which HdrHistogram's own tools read.

use super::{name_of, report_err};
use crate::report::summary::Summary;
use crate::run::experiment::Measured;
use crate::LoadgenError;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub(super) fn timeline_csv(summary: &Summary) -> String {
    let mut out = String::from(
        "protocol,second,scheduled,committed,rejected,aborted,undecided,errors,dropped,available,committed_by_completion\n",
    );
    for run in &summary.runs {
        let name = run.label();
        for b in &run.timeline {
            let fields = [
                b.second,
                b.scheduled,
                b.committed,
                b.rejected,
                b.aborted,
                b.undecided,
                b.errors,
                b.dropped,
                b.available,
                b.committed_by_completion,
            ];
            let fields: Vec<String> = fields.iter().map(u64::to_string).collect();
            let _ = writeln!(out, "{name},{}", fields.join(","));
        }
    }
    out
}

/// The client latency histograms, one interval per second of the run (by when the answers
/// arrived) and outcome, tagged with it (µs). StartTime and BaseTime are the real moment the
/// load began, so interval timestamps are seconds after it, as HdrHistogram's tools expect.
pub(super) fn write_hlog(dir: &Path, m: &Measured) -> Result<(), LoadgenError> {
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let began = SystemTime::UNIX_EPOCH + Duration::from_micros(m.intervals.begin_unix_us);
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "txlab client latency of {}, microseconds, one interval per second and outcome",
                name_of(m)
            ))
            .with_start_time(began)
            .with_base_time(began)
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(report_err)?;
        for (second, by_kind) in m.intervals.seconds() {
            for (kind, h) in by_kind {
                writer
                    .write_histogram(
                        h,
                        Duration::from_secs(second),
                        Duration::from_secs(1),
                        Tag::new(kind.as_str()),
                    )
                    .map_err(report_err)?;
            }
        }
    }
    std::fs::write(dir.join(format!("{}.hlog", m.run.file_stem())), buf).map_err(report_err)
}
