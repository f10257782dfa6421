//! One scenario against one or more protocols, each on a freshly seeded copy of the same data set
//! in one environment: floors first, then per protocol warm-up, measurement, the services' own
//! figures, quiescence and the invariant checker.

use crate::closed_loop::{self, ClosedLoop, LoadResult};
use crate::open_loop::{self, OpenLoop};
use crate::probe::{self, Floors};
use crate::protocols::Running;
use crate::scenario::{LoadMode, Protocol, Scenario};
use crate::summary::{Percentiles, ProtocolRun, ServiceFigures};
use crate::LoadgenError;
use common::checker::{check, check_outcomes, CheckReport};
use common::datagen::DataSet;
use common::domain::OutcomeKind;
use common::env::LabEnv;
use common::metrics::pb::{Snapshot, SnapshotRequest};
use common::metrics::{decode, new_histogram, MetricsClient};
use common::storage::Databases;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A protocol's run with its raw histograms, for the report's plots and HdrHistogram logs.
pub struct Measured {
    pub run: ProtocolRun,
    /// Client latency (µs) by outcome.
    pub latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    /// Each service's raw histograms, by service then name.
    pub service_histograms: BTreeMap<String, BTreeMap<String, Histogram<u64>>>,
}

/// Measures the floors in `env` (DESIGN §6), 300 samples of each primitive.
pub async fn floors(env: &LabEnv) -> Result<Floors, LoadgenError> {
    eprintln!("probing the floors: gRPC round trip, PostgreSQL commit, PREPARE+COMMIT PREPARED, Kafka hop");
    Ok(probe::measure(env, 300).await?)
}

/// Runs `protocol` under `scenario`. Binaries come from `bin_dir`, logs go to `log_dir`.
pub async fn measure(
    env: &LabEnv,
    scenario: &Scenario,
    protocol: Protocol,
    floors: &Floors,
    bin_dir: &Path,
    log_dir: &Path,
) -> Result<Measured, LoadgenError> {
    let data = DataSet::generate(&scenario.data_set_spec())?;
    let urls = env.postgres.recreate_databases("").await?;
    let dbs = Databases::connect(&urls, 4).await?;
    dbs.migrate().await?;
    dbs.reset_and_seed(&data).await?;
    eprintln!("{}: starting its processes", protocol.name());
    let running = Running::start(
        protocol,
        scenario,
        env,
        urls,
        bin_dir,
        &log_dir.join(protocol.name()),
    )
    .await?;
    let channel = tonic::transport::Endpoint::from_shared(running.url())
        .map_err(|e| LoadgenError::Metrics(e.to_string()))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(LoadgenError::Connect)?;

    if scenario.load.warmup_s > 0 {
        eprintln!("{}: warm-up {} s", protocol.name(), scenario.load.warmup_s);
        drive(
            channel.clone(),
            scenario,
            &data,
            Duration::from_secs(scenario.load.warmup_s),
            1_000_000,
        )
        .await;
        snapshots(&running.metrics_urls(), true).await?;
    }
    eprintln!(
        "{}: measuring {} s",
        protocol.name(),
        scenario.load.duration_s
    );
    let driven = drive(
        channel,
        scenario,
        &data,
        Duration::from_secs(scenario.load.duration_s),
        0,
    )
    .await;
    // Quiescence first: what finishes after the client's answer (compensations, in-doubt
    // resolution, late semantic locks) belongs in the services' figures too.
    let mut check = quiescent_check(&dbs, &data, Duration::from_secs(60)).await?;
    check
        .violations
        .extend(check_outcomes(&dbs, &driven.told).await?);
    let snapshots = snapshots(&running.metrics_urls(), false).await?;
    drop(running);

    let mut service_histograms = BTreeMap::new();
    let mut services = Vec::new();
    for snapshot in &snapshots {
        let histograms = decode(snapshot).map_err(|e| LoadgenError::Metrics(e.to_string()))?;
        services.push(ServiceFigures {
            service: snapshot.service.clone(),
            histograms: histograms
                .iter()
                .map(|(k, h)| (k.clone(), Percentiles::of(h)))
                .collect(),
            counters: snapshot.counters.clone().into_iter().collect(),
            maxima: snapshot.maxima.clone().into_iter().collect(),
        });
        service_histograms.insert(snapshot.service.clone(), histograms);
    }
    let mut run = summarize(protocol, &driven, floors, services, check);
    run.offered_rate = (scenario.load.mode == LoadMode::Open)
        .then_some(scenario.load.rate)
        .flatten();
    Ok(Measured {
        run,
        latency: driven.latency,
        service_histograms,
    })
}

/// The client's view of one load, whichever loop produced it.
struct Driven {
    latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    timeline: Vec<open_loop::SecondBucket>,
    started: u64,
    dropped_at_cap: u64,
    measured: Duration,
    schedule_lag: Option<Histogram<u64>>,
    acceptance: Option<Histogram<u64>>,
    told: Vec<(common::domain::OrderId, OutcomeKind)>,
}

async fn drive(
    channel: tonic::transport::Channel,
    scenario: &Scenario,
    data: &DataSet,
    duration: Duration,
    stream_base: u64,
) -> Driven {
    let workload = scenario.workload_spec();
    let deadline = Duration::from_millis(scenario.deadline_ms);
    match scenario.load.mode {
        LoadMode::Open => {
            let load = OpenLoop {
                rate: scenario.load.rate.unwrap_or(1.0),
                duration,
                arrivals: scenario.load.arrivals,
                max_in_flight: scenario.load.max_in_flight,
                deadline,
                seed: scenario.seed.wrapping_add(stream_base),
                stream_base,
                precise: false,
            };
            let r = open_loop::run(channel, data, &workload, &load).await;
            Driven {
                told: r.told,
                latency: r.latency,
                errors: r.errors,
                timeline: r.timeline,
                started: r.started,
                dropped_at_cap: r.dropped_at_cap,
                measured: duration,
                schedule_lag: Some(r.schedule_lag),
                acceptance: Some(r.acceptance).filter(|h| !h.is_empty()),
            }
        }
        LoadMode::Closed => {
            let load = ClosedLoop {
                clients: scenario.load.clients.unwrap_or(1),
                orders: usize::MAX,
                duration: Some(duration),
                stream_base,
                deadline,
            };
            let r: LoadResult = closed_loop::run(channel, data, &workload, &load).await;
            Driven {
                started: r.started(),
                told: r.told,
                latency: r.latency,
                errors: r.errors,
                timeline: r.timeline,
                dropped_at_cap: 0,
                measured: r.elapsed,
                schedule_lag: None,
                acceptance: None,
            }
        }
    }
}

fn summarize(
    protocol: Protocol,
    d: &Driven,
    floors: &Floors,
    services: Vec<ServiceFigures>,
    check: CheckReport,
) -> ProtocolRun {
    let mut all = new_histogram();
    for h in d.latency.values() {
        all.add(h).expect("same bounds");
    }
    let count = |k: OutcomeKind| d.latency.get(&k).map_or(0, |h| h.len());
    let available: u64 = d.timeline.iter().map(|b| b.available).sum();
    let mut latency: BTreeMap<String, Percentiles> = d
        .latency
        .iter()
        .map(|(k, h)| (k.as_str().to_string(), Percentiles::of(h)))
        .collect();
    latency.insert("ALL".into(), Percentiles::of(&all));
    let floor_us = floors.floor_us(protocol);
    let p50_committed = d
        .latency
        .get(&OutcomeKind::Committed)
        .map(|h| h.value_at_quantile(0.5) as f64);
    ProtocolRun {
        protocol: Some(protocol),
        offered_rate: None,
        measured_s: d.measured.as_secs_f64(),
        started: d.started,
        dropped_at_cap: d.dropped_at_cap,
        errors: d.errors.clone(),
        outcomes: OutcomeKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), count(*k)))
            .collect(),
        committed_per_s: count(OutcomeKind::Committed) as f64 / d.measured.as_secs_f64().max(1e-9),
        availability: available as f64 / (d.started + d.dropped_at_cap).max(1) as f64,
        latency,
        schedule_lag: d.schedule_lag.as_ref().map(Percentiles::of),
        acceptance: d.acceptance.as_ref().map(Percentiles::of),
        p50_over_floor: p50_committed
            .filter(|_| floor_us > 0.0)
            .map(|p50| p50 / floor_us),
        floor_ms: (floor_us > 0.0).then_some(floor_us / 1000.0),
        services,
        timeline: d.timeline.clone(),
        check,
    }
}

/// Every service's metrics; with `reset`, they start over.
async fn snapshots(endpoints: &[String], reset: bool) -> Result<Vec<Snapshot>, LoadgenError> {
    let mut out = Vec::new();
    for url in endpoints {
        let mut client = MetricsClient::connect(url.clone())
            .await
            .map_err(LoadgenError::Connect)?;
        let snapshot = client
            .get_snapshot(SnapshotRequest { reset })
            .await
            .map_err(|status| LoadgenError::Metrics(status.message().to_string()))?;
        out.push(snapshot.into_inner());
    }
    Ok(out)
}

/// Waits until the checker finds nothing left in flight (or `within` passes), then reports what
/// it found: leftovers after that are part of the result, never hidden.
async fn quiescent_check(
    dbs: &Databases,
    data: &DataSet,
    within: Duration,
) -> Result<CheckReport, LoadgenError> {
    let until = Instant::now() + within;
    loop {
        let report = check(dbs, data).await?;
        if report.is_clean() || Instant::now() > until {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
