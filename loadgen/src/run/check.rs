//! `loadgen check`: the environment end to end — start it, migrate and seed every database, and
//! run the invariant checker, which must find a freshly seeded data set clean.

use crate::cli::CheckArgs;
use crate::LoadgenError;
use common::checker::{check, CheckReport};
use common::datagen::{DataSet, DataSetSpec};
use common::env::{LabEnv, LabEnvConfig};
use common::storage::Databases;
use std::time::Instant;

/// What `check` saw, for printing.
pub struct CheckOutcome {
    pub report: CheckReport,
    pub env_start: std::time::Duration,
    pub data_set: DataSet,
}

pub async fn run(args: &CheckArgs) -> Result<CheckOutcome, LoadgenError> {
    let spec = DataSetSpec {
        seed: args.seed,
        customers: args.customers,
        skus: args.skus,
        ..DataSetSpec::default()
    };
    let data_set = DataSet::generate(&spec)?;
    tracing::info!(run_dir = %args.env.run_dir.display(), "starting PostgreSQL and Kafka");
    let env = LabEnv::start(&LabEnvConfig::new(&args.env.run_dir)).await?;
    let urls = env.postgres.recreate_databases("").await?;
    let dbs = Databases::connect_observer(&urls, 4).await?;
    dbs.migrate().await?;
    let seeded = Instant::now();
    dbs.reset_and_seed(&data_set).await?;
    tracing::info!(customers = spec.customers, skus = spec.skus, elapsed = ?seeded.elapsed(), "data set seeded");
    let report = check(&dbs, &data_set).await?;
    dbs.orders.close().await;
    let env_start = env.start_time;
    env.stop();
    Ok(CheckOutcome {
        report,
        env_start,
        data_set,
    })
}
