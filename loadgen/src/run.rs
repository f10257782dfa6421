//! `loadgen run`: one protocol, one closed-loop load, on a fresh copy of the data set in the
//! local environment; then the services' own metrics and the invariant checker.

use crate::cli::RunArgs;
use crate::closed_loop::{self, ClosedLoop, LoadResult};
use crate::workload::WorkloadSpec;
use crate::LoadgenError;
use common::checker::{check, CheckReport};
use common::datagen::{DataSet, DataSetSpec};
use common::env::{LabEnv, LabEnvConfig};
use common::metrics::pb::{Snapshot, SnapshotRequest};
use common::metrics::MetricsClient;
use common::storage::Databases;
use std::time::{Duration, Instant};
use twopc::branch::ServiceKind;
use twopc::deployment::{Deployment, DeploymentConfig};

/// Everything a run measured.
pub struct RunReport {
    pub load: LoadResult,
    /// Each service's metrics snapshot (coordinator and participants).
    pub services: Vec<Snapshot>,
    pub check: CheckReport,
    pub env_start: Duration,
}

pub async fn run(args: &RunArgs) -> Result<RunReport, LoadgenError> {
    let spec = DataSetSpec {
        seed: args.seed,
        customers: args.customers,
        skus: args.skus,
        ..DataSetSpec::default()
    };
    let data = DataSet::generate(&spec)?;
    let env = LabEnv::start(&LabEnvConfig::new(&args.run_dir)).await?;
    let urls = env.postgres.recreate_databases("").await?;
    let dbs = Databases::connect(&urls, 4).await?;
    dbs.migrate().await?;
    dbs.reset_and_seed(&data).await?;

    let bin_dir = std::env::current_exe().map_err(|source| LoadgenError::Io {
        what: "locating loadgen",
        source,
    })?;
    let bin_dir = bin_dir
        .parent()
        .expect("an executable lives in a directory");
    let mut config = DeploymentConfig::new(bin_dir, args.run_dir.join("logs"), urls);
    config.prepare_order = args.prepare_order;
    config.prepare_timeout = Duration::from_millis(args.prepare_timeout_ms);
    config.default_deadline = Duration::from_millis(args.deadline_ms);
    let deployment = Deployment::start(config).await?;

    let workload = WorkloadSpec {
        seed: args.seed,
        sku_skew: args.sku_skew,
        ..WorkloadSpec::default()
    };
    let mut endpoints = vec![deployment.url()];
    endpoints.extend(
        ServiceKind::ALL
            .iter()
            .map(|k| deployment.participant_url(*k)),
    );
    let deadline = Duration::from_millis(args.deadline_ms);
    if args.warmup > 0 {
        eprintln!("warm-up: {} orders", args.warmup);
        let warmup = ClosedLoop {
            clients: args.clients,
            orders: args.warmup,
            stream_base: 1_000_000,
            deadline,
        };
        closed_loop::run(&deployment.url(), &data, &workload, &warmup)
            .await
            .map_err(LoadgenError::Connect)?;
        snapshots(&endpoints, true).await?; // Services' metrics start over with the measurement.
    }
    eprintln!(
        "measuring: {} orders from {} clients",
        args.orders, args.clients
    );
    let load = ClosedLoop {
        clients: args.clients,
        orders: args.orders,
        stream_base: 0,
        deadline,
    };
    let result = closed_loop::run(&deployment.url(), &data, &workload, &load)
        .await
        .map_err(LoadgenError::Connect)?;
    let services = snapshots(&endpoints, false).await?;

    // Quiescence: every decision delivered, no branch prepared. Leftovers after 30 s are reported.
    let quiet_by = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = check(&dbs, &data).await?;
        if report.is_clean() || Instant::now() > quiet_by {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(deployment);
    let env_start = env.start_time;
    env.stop();
    Ok(RunReport {
        load: result,
        services,
        check: report,
        env_start,
    })
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
