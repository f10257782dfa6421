//! Histograms and counters a protocol process records and serves over gRPC (`Metrics`), so the
//! load generator reads every process the same way. Values are microseconds, 3 significant
//! digits, from 1 µs to 1 hour.

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("txlab.metrics.v1");
}

pub use pb::metrics_client::MetricsClient;
pub use pb::metrics_server::MetricsServer;

/// Highest value a histogram holds: one hour in microseconds; larger values are clamped.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram with the lab's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

/// Records a duration in microseconds, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, value: Duration) {
    let micros = (value.as_micros() as u64).clamp(1, MAX_MICROS);
    histogram.record(micros).expect("clamped into range");
}

#[derive(Default)]
struct Inner {
    histograms: HashMap<&'static str, Histogram<u64>>,
    counters: HashMap<&'static str, u64>,
    maxima: HashMap<&'static str, u64>,
}

/// One process's metrics, shared by its tasks. Recording takes a short lock: fine at the lab's
/// rates (≤ tens of thousands of events per second per process).
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    service: String,
    inner: Arc<Mutex<Inner>>,
    settings: Arc<Mutex<BTreeMap<String, String>>>,
}

impl MetricsRegistry {
    pub fn new(service: impl Into<String>) -> Self {
        MetricsRegistry {
            service: service.into(),
            inner: Arc::default(),
            settings: Arc::default(),
        }
    }

    /// Records a setting this process runs with, for the run's report (kept across resets).
    pub fn set_setting(&self, name: impl Into<String>, value: impl ToString) {
        self.settings
            .lock()
            .expect("settings lock")
            .insert(name.into(), value.to_string());
    }

    pub fn record(&self, name: &'static str, value: Duration) {
        let mut inner = self.inner.lock().expect("metrics lock");
        record(
            inner.histograms.entry(name).or_insert_with(new_histogram),
            value,
        );
    }

    pub fn add(&self, counter: &'static str, n: u64) {
        *self
            .inner
            .lock()
            .expect("metrics lock")
            .counters
            .entry(counter)
            .or_default() += n;
    }

    /// Keeps the largest value seen (e.g. the longest in-doubt time), in microseconds.
    pub fn observe_max(&self, name: &'static str, value: Duration) {
        let mut inner = self.inner.lock().expect("metrics lock");
        let slot = inner.maxima.entry(name).or_default();
        *slot = (*slot).max(value.as_micros() as u64);
    }

    /// Everything recorded so far; with `reset`, starts over.
    pub fn snapshot(&self, reset: bool) -> pb::Snapshot {
        let mut inner = self.inner.lock().expect("metrics lock");
        let mut serializer = V2DeflateSerializer::new();
        let mut histograms = Vec::new();
        for (name, histogram) in &inner.histograms {
            let mut bytes = Vec::new();
            serializer
                .serialize(histogram, &mut bytes)
                .expect("serializing into memory");
            histograms.push(pb::HistogramSnapshot {
                name: name.to_string(),
                hdr_v2_deflate: bytes,
            });
        }
        let snapshot = pb::Snapshot {
            service: self.service.clone(),
            histograms,
            counters: inner
                .counters
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            maxima: inner
                .maxima
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            settings: self
                .settings
                .lock()
                .expect("settings lock")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        if reset {
            *inner = Inner::default();
        }
        snapshot
    }
}

#[tonic::async_trait]
impl pb::metrics_server::Metrics for MetricsRegistry {
    async fn get_snapshot(
        &self,
        request: tonic::Request<pb::SnapshotRequest>,
    ) -> Result<tonic::Response<pb::Snapshot>, tonic::Status> {
        Ok(tonic::Response::new(
            self.snapshot(request.into_inner().reset),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("histogram {name:?} from {service} does not decode: {reason}")]
pub struct DecodeError {
    pub service: String,
    pub name: String,
    pub reason: String,
}

/// The histograms of a snapshot, by name.
pub fn decode(snapshot: &pb::Snapshot) -> Result<BTreeMap<String, Histogram<u64>>, DecodeError> {
    let mut deserializer = Deserializer::new();
    let mut out = BTreeMap::new();
    for h in &snapshot.histograms {
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut h.hdr_v2_deflate.as_slice())
            .map_err(|e| DecodeError {
                service: snapshot.service.clone(),
                name: h.name.clone(),
                reason: format!("{e:?}"),
            })?;
        out.insert(h.name.clone(), histogram);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_resets() {
        let registry = MetricsRegistry::new("participant/payment");
        for ms in 1..=100 {
            registry.record("lock_hold", Duration::from_millis(ms));
        }
        registry.add("prepared", 3);
        registry.observe_max("in_doubt_max", Duration::from_millis(5));
        registry.observe_max("in_doubt_max", Duration::from_millis(2));
        let snapshot = registry.snapshot(true);
        let histograms = decode(&snapshot).unwrap();
        let hold = &histograms["lock_hold"];
        assert_eq!(hold.len(), 100);
        assert!(
            (hold.value_at_quantile(0.5) as i64 - 50_000).abs() < 100,
            "{}",
            hold.value_at_quantile(0.5)
        );
        assert_eq!(snapshot.counters["prepared"], 3);
        assert_eq!(snapshot.maxima["in_doubt_max"], 5_000);
        assert!(
            registry.snapshot(false).histograms.is_empty(),
            "reset clears"
        );
    }
}
