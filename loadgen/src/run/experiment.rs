//! One scenario against one or more protocols, each on a freshly seeded copy of the same data set
//! in one environment: floors first, then per protocol warm-up, measurement, the services' own
//! figures, quiescence and the invariant checker.

use crate::load::connections::Connections;
use crate::load::{drive, Driven};
use crate::report::figures::by_process;
use crate::report::summary::{Percentiles, ProtocolRun, ServiceFigures};
use crate::run::deployed::{Deployment, DeploymentError, ProtocolSection};
use crate::run::environment::Lab;
use crate::run::faults::injector::{inject, score, Injected, Targets};
use crate::run::faults::remote::RemoteFaults;
use crate::run::faults::schedule::Role;
use crate::run::probe::Floors;
use crate::run::protocols::Running;
use crate::run::resources;
use crate::run::stalls;
use crate::run::warm;
use crate::scenario::{LoadMode, Protocol, Scenario};
use crate::LoadgenError;
use common::checker::{check, check_outcomes, fates_of_unanswered, CheckReport};
use common::datagen::DataSet;
use common::domain::OutcomeKind;
use common::kafka_clients::delete_prefixed;
use common::metrics::pb::{Snapshot, SnapshotRequest};
use common::metrics::{new_histogram, MetricsClient};
use common::semantic_locks;
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
    /// The same per second of the run, for the HdrHistogram interval log.
    pub intervals: crate::load::intervals::Intervals,
    /// Each service's raw histograms, by service then name.
    pub service_histograms: BTreeMap<String, BTreeMap<String, Histogram<u64>>>,
}

/// The protocol under measurement: processes the lab started, or a deployment's addresses.
enum Services {
    Started(Box<Running>),
    Deployed { front: String, metrics: Vec<String> },
}

impl Services {
    fn url(&self) -> String {
        match self {
            Services::Started(running) => running.url(),
            Services::Deployed { front, .. } => front.clone(),
        }
    }

    fn metrics_urls(&self) -> Vec<String> {
        match self {
            Services::Started(running) => running.metrics_urls(),
            Services::Deployed { metrics, .. } => metrics.clone(),
        }
    }
}

/// Runs `protocol` under `scenario`. Binaries come from `bin_dir`, logs go to `log_dir`.
pub async fn measure(
    lab: &mut Lab,
    scenario: &Scenario,
    protocol: Protocol,
    floors: &Floors,
    bin_dir: &Path,
    log_dir: &Path,
) -> Result<Measured, LoadgenError> {
    let data = DataSet::generate(&scenario.data_set_spec())?;
    let urls = match &*lab {
        Lab::Local(local) => local.env.postgres.recreate_databases("").await?,
        Lab::Deployed(d) => deployed_section(d, protocol)?.databases.clone(),
    };
    let dbs = Databases::connect_observer(&urls, 4).await?;
    dbs.migrate().await?;
    dbs.reset_and_seed(&data).await?;
    dbs.settle_after_seed().await?;
    let stats_url = urls.orders.clone();
    let mut services = match &*lab {
        Lab::Local(local) => {
            eprintln!("{}: starting its processes", protocol.name());
            Services::Started(Box::new(
                Running::start(
                    protocol,
                    scenario,
                    &local.env.bootstrap_servers(),
                    urls,
                    bin_dir,
                    &log_dir.join(protocol.name()),
                    !scenario.faults.is_empty(),
                    local.broker_links.as_ref(),
                )
                .await?,
            ))
        }
        Lab::Deployed(d) => {
            let section = deployed_section(d, protocol)?;
            match &section.front {
                Some(front) => Services::Deployed {
                    front: front.clone(),
                    metrics: section.metrics.clone(),
                },
                None => {
                    eprintln!(
                        "{}: starting its processes here, against the deployment",
                        protocol.name()
                    );
                    let bootstrap = d.probe.kafka.clone().unwrap_or_default();
                    Services::Started(Box::new(
                        Running::start(
                            protocol,
                            scenario,
                            &bootstrap,
                            urls,
                            bin_dir,
                            &log_dir.join(protocol.name()),
                            false,
                            None,
                        )
                        .await?,
                    ))
                }
            }
        }
    };
    let connections = std::sync::Arc::new(
        Connections::open(&services.url(), scenario.load.connections)
            .await
            .map_err(LoadgenError::Connect)?,
    );

    // The warm-up's answers are not measured, but they are checked like the others.
    let mut warmup = (Vec::new(), Vec::new());
    if scenario.load.warmup_s > 0 {
        eprintln!("{}: warm-up {} s", protocol.name(), scenario.load.warmup_s);
        let warm = drive(
            &connections,
            scenario,
            &data,
            Duration::from_secs(scenario.load.warmup_s),
            1_000_000,
        )
        .await;
        warmup = (warm.recorded.told, warm.recorded.unanswered);
    }
    if let (Lab::Local(local), true) = (&*lab, protocol != Protocol::Twopc) {
        let cap = Duration::from_secs(scenario.load.broker_warmup_s);
        let pid = local.env.kafka.pids()[0];
        let started = Instant::now();
        let mut slice = 0;
        while started.elapsed() < cap {
            let before = warm::compiler_cpu(pid);
            slice += 1;
            let warm = drive(
                &connections,
                scenario,
                &data,
                warm::SLICE,
                1_000_000 + 10_000 * slice,
            )
            .await;
            warmup.0.extend(warm.recorded.told);
            warmup.1.extend(warm.recorded.unanswered);
            if warm::settled(before, warm::compiler_cpu(pid), warm::SLICE) {
                break;
            }
        }
        if slice > 1 {
            eprintln!(
                "{}: warmed {:.0} s more, until the broker's JIT compiler settled{}",
                protocol.name(),
                started.elapsed().as_secs_f64(),
                if started.elapsed() >= cap {
                    " or the cap (load.broker_warmup_s) passed"
                } else {
                    ""
                }
            );
        }
    }
    // The services' figures start here: warm-up, and (deployed) whatever ran before, is dropped.
    snapshots(&services.metrics_urls(), true).await?;
    eprintln!(
        "{}: measuring {} s",
        protocol.name(),
        scenario.load.duration_s
    );
    let measured = Duration::from_secs(scenario.load.duration_s);
    let postmasters = match &*lab {
        Lab::Local(local) => local.env.postgres.pids(),
        Lab::Deployed(_) => Vec::new(),
    };
    let sampler = resources::Sampler::start(postmasters, Some(stats_url));
    let (driven, injected) = match (&mut *lab, &mut services) {
        _ if scenario.faults.is_empty() => (
            drive(&connections, scenario, &data, measured, 0).await,
            Injected {
                records: Vec::new(),
                before_kills: Vec::new(),
            },
        ),
        (lab, services) => {
            let remote;
            let targets = match (lab, services) {
                (Lab::Local(local), Services::Started(running)) => Targets::Local {
                    running: running.as_mut(),
                    env: &mut local.env,
                },
                (Lab::Deployed(d), _) => {
                    remote = remote_faults(d, protocol).await?;
                    Targets::Remote(&remote)
                }
                (Lab::Local(_), Services::Deployed { .. }) => {
                    unreachable!("the local environment starts its own processes")
                }
            };
            // The load gets its own task: a crash or a restart blocks this one (waiting for a
            // child to exit, starting Java) and must not stall the orders' start times with it.
            let driver = {
                let (connections, scenario, data) =
                    (connections.clone(), scenario.clone(), data.clone());
                tokio::spawn(
                    async move { drive(&connections, &scenario, &data, measured, 0).await },
                )
            };
            let begin = Instant::now();
            let injected = inject(&scenario.faults, begin, targets, &dbs).await;
            let driven = driver
                .await
                .map_err(|e| LoadgenError::Metrics(format!("the load driver failed: {e}")))?;
            (driven, injected)
        }
    };
    let mut resources = sampler.finish().await;
    // The window only: the seconds after it drain the answers and would dilute the cost.
    resources.truncate(scenario.load.duration_s as usize);
    let Injected {
        records: mut faults,
        before_kills,
    } = injected;
    score(&mut faults, &driven.recorded.timeline);
    if let Services::Started(running) = &services {
        if let Some(network) = &running.network {
            network.heal_all();
        }
    }
    // Quiescence first: what finishes after the client's answer (compensations, in-doubt
    // resolution, late semantic locks) belongs in the services' figures too.
    let mut check = quiescent_check(&dbs, &data, Duration::from_secs(60)).await?;
    let (mut told, mut unanswered) = warmup;
    told.extend_from_slice(&driven.recorded.told);
    unanswered.extend_from_slice(&driven.recorded.unanswered);
    check.violations.extend(check_outcomes(&dbs, &told).await?);
    let unanswered_fates = fates_of_unanswered(&dbs, &unanswered).await?;
    // After faults, a process whose restart failed has no figures to give; the others still do.
    let snapshots = if scenario.faults.is_empty() {
        snapshots(&services.metrics_urls(), false).await?
    } else {
        let mut reachable = Vec::new();
        for url in services.metrics_urls() {
            match snapshots(std::slice::from_ref(&url), false).await {
                Ok(mut one) => reachable.append(&mut one),
                Err(e) => eprintln!("  no figures from {url}: {e}"),
            }
        }
        reachable
    };
    let saga_prefix = match &services {
        Services::Started(running) => running.saga_prefix(),
        Services::Deployed { .. } => None,
    };
    drop(services);
    if let (Some(bootstrap), Some(prefix)) = (lab.kafka_bootstrap(), saga_prefix) {
        // The next protocol, and a broker crash during it, must not carry this run's partitions.
        match delete_prefixed(&bootstrap, &prefix).await {
            Ok((topics, groups)) => {
                tracing::debug!(
                    prefix,
                    topics,
                    groups,
                    "deleted the run's topics and groups"
                )
            }
            Err(e) => tracing::warn!(prefix, error = %e, "could not delete the run's topics"),
        }
    }

    // A process killed by a fault: its figures up to the kill count too.
    let mut all = snapshots;
    all.extend(before_kills);
    let mut processes = by_process(&all).map_err(|e| LoadgenError::Metrics(e.to_string()))?;
    if protocol != Protocol::Twopc {
        // The window's orders, answered or not: one definition for both saga modes.
        let orders: Vec<_> = driven
            .recorded
            .told
            .iter()
            .map(|(id, _)| *id)
            .chain(driven.recorded.unanswered.iter().copied())
            .collect();
        let locks = semantic_locks::of_orders(&dbs, &orders)
            .await
            .map_err(|e| LoadgenError::Metrics(format!("reading semantic locks: {e}")))?;
        for (owner, name, histogram) in [
            ("/inventory", semantic_locks::RESERVATION, locks.reservation),
            ("/payment", semantic_locks::CHARGE, locks.charge),
        ] {
            if let Some(process) = processes.iter_mut().find(|p| p.service.ends_with(owner)) {
                process.histograms.insert(name.to_string(), histogram);
            }
        }
    }
    let mut service_histograms = BTreeMap::new();
    let mut services = Vec::new();
    for process in processes {
        services.push(ServiceFigures {
            service: process.service.clone(),
            histograms: process
                .histograms
                .iter()
                .map(|(k, h)| (k.clone(), Percentiles::of(h)))
                .collect(),
            counters: process.counters,
            maxima: process.maxima,
            settings: process.settings,
        });
        service_histograms.insert(process.service, process.histograms);
    }
    let prepare = scenario.twopc.prepare_order;
    let mut run = summarize(protocol, prepare, &driven, floors, services, check);
    run.faults = faults;
    let in_window: u64 = driven
        .recorded
        .timeline
        .iter()
        .map(|b| b.committed_by_completion)
        .sum();
    run.cpu_ms_per_commit = resources::cpu_per_commit(&resources, in_window);
    run.slowest_second = stalls::slowest_second(
        &driven.recorded.intervals,
        &resources,
        scenario.load.duration_s,
    );
    run.resources = resources;
    run.unanswered_fates = unanswered_fates;
    run.answers_checked = told.len() as u64;
    run.offered_rate = (scenario.load.mode == LoadMode::Open)
        .then_some(scenario.load.rate)
        .flatten();
    Ok(Measured {
        run,
        latency: driven.recorded.latency,
        intervals: driven.recorded.intervals,
        service_histograms,
    })
}

/// The deployment's fault backend for `protocol`, its proxies cleared of earlier toxics.
async fn remote_faults(d: &Deployment, protocol: Protocol) -> Result<RemoteFaults, LoadgenError> {
    let section = deployed_section(d, protocol)?;
    let invalid = |reason: String| {
        LoadgenError::Deployment(DeploymentError::Invalid {
            path: "--deployment".into(),
            field: "faults.toxiproxy".into(),
            reason,
        })
    };
    let Some(faults) = &d.faults else {
        return Err(invalid(
            "fault injection in a deployment needs [faults]".into(),
        ));
    };
    let front = match protocol {
        Protocol::Twopc | Protocol::SagaOrchestrated => Role::Coordinator,
        Protocol::SagaChoreographed => Role::Order,
    };
    let remote = RemoteFaults::new(faults, &section.links, &section.commands, front)
        .map_err(|e| invalid(e.to_string()))?;
    remote.clear().await.map_err(|e| invalid(e.to_string()))?;
    Ok(remote)
}

/// The deployment's section for `protocol` (checked before anything ran; still an error, not a
/// panic, if a caller skipped that).
fn deployed_section(d: &Deployment, protocol: Protocol) -> Result<&ProtocolSection, LoadgenError> {
    d.protocol(protocol).ok_or_else(|| {
        LoadgenError::Deployment(DeploymentError::Invalid {
            path: "--deployment".into(),
            field: format!("[{}]", protocol.name()),
            reason: "this deployment does not run it".into(),
        })
    })
}

fn summarize(
    protocol: Protocol,
    prepare: twopc::coordinator::PrepareOrder,
    d: &Driven,
    floors: &Floors,
    services: Vec<ServiceFigures>,
    check: CheckReport,
) -> ProtocolRun {
    let (r, measured) = (&d.recorded, d.measured);
    let mut all = new_histogram();
    for h in r.latency.values() {
        all.add(h).expect("same bounds");
    }
    let count = |k: OutcomeKind| r.latency.get(&k).map_or(0, |h| h.len());
    let available: u64 = r.timeline.iter().map(|b| b.available).sum();
    let mut latency: BTreeMap<String, Percentiles> = r
        .latency
        .iter()
        .map(|(k, h)| (k.as_str().to_string(), Percentiles::of(h)))
        .collect();
    latency.insert("ALL".into(), Percentiles::of(&all));
    let floor_us = floors.floor_us(protocol, prepare);
    let measured_s = measured.as_secs_f64().max(1e-9);
    let p50_committed = r
        .latency
        .get(&OutcomeKind::Committed)
        .map(|h| h.value_at_quantile(0.5) as f64);
    ProtocolRun {
        protocol: Some(protocol),
        repetition: None,
        floors: None,
        offered_rate: None,
        measured_s: measured.as_secs_f64(),
        started: r.started,
        dropped_at_cap: r.dropped_at_cap,
        errors: r.errors.clone(),
        outcomes: OutcomeKind::ALL
            .iter()
            .map(|k| (k.as_str().to_string(), count(*k)))
            .collect(),
        offered_per_s: d.open.then(|| {
            let scheduled: u64 = r.timeline.iter().map(|b| b.scheduled).sum();
            scheduled as f64 / measured_s
        }),
        committed_per_s: r
            .timeline
            .iter()
            .map(|b| b.committed_by_completion)
            .sum::<u64>() as f64
            / measured_s,
        committed_after_window: r.committed_after_window,
        availability: available as f64 / (r.started + r.dropped_at_cap).max(1) as f64,
        latency,
        schedule_lag: d.open.then(|| Percentiles::of(&r.schedule_lag)),
        acceptance: Some(&r.acceptance)
            .filter(|h| !h.is_empty())
            .map(Percentiles::of),
        p50_over_floor: p50_committed
            .filter(|_| floor_us > 0.0)
            .map(|p50| p50 / floor_us),
        floor_ms: (floor_us > 0.0).then_some(floor_us / 1000.0),
        fastest_committed_ms: r
            .latency
            .get(&OutcomeKind::Committed)
            .filter(|h| !h.is_empty())
            .map(|h| h.min() as f64 / 1000.0),
        services,
        timeline: r.timeline.clone(),
        check,
        answers_checked: 0,
        unanswered_fates: BTreeMap::new(),
        resources: Vec::new(),
        cpu_ms_per_commit: BTreeMap::new(),
        slowest_second: None,
        faults: Vec::new(),
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
