//! `compare`, `run` and `probe`: the environment, the floors, each protocol in turn, the report.

use crate::cli::{CompareArgs, EnvArgs, SweepArgs};
use crate::experiment::{self, Measured};
use crate::probe::Floors;
use crate::scenario::{LoadMode, Protocol, Scenario};
use crate::summary::{Environment, Summary};
use crate::LoadgenError;
use common::env::{LabEnv, LabEnvConfig};
use common::kafka_clients::ClientTuning;
use std::path::{Path, PathBuf};

/// The repository's `scenarios/` (next to the workspace), or `./scenarios`.
pub fn scenarios_dir() -> PathBuf {
    let beside_sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    if beside_sources.is_dir() {
        beside_sources
    } else {
        PathBuf::from("scenarios")
    }
}

fn bin_dir() -> Result<PathBuf, LoadgenError> {
    let exe = std::env::current_exe().map_err(|source| LoadgenError::Io {
        what: "locating loadgen",
        source,
    })?;
    Ok(exe
        .parent()
        .expect("an executable lives in a directory")
        .to_path_buf())
}

/// Runs `protocols` (all of the scenario's when `None`) and writes the report; returns its folder.
pub async fn compare(
    args: &CompareArgs,
    only: Option<Protocol>,
    command: String,
) -> Result<(PathBuf, Summary), LoadgenError> {
    let mut scenario = Scenario::load(&args.scenario, &scenarios_dir())?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let protocols = match only {
        Some(p) => vec![p],
        None => scenario.protocols.clone(),
    };
    let started_at = chrono::Utc::now();
    let mut environment = Environment::read();
    let env = LabEnv::start(&LabEnvConfig::new(&args.env.run_dir)).await?;
    environment.postgres = postgres_version(&env).await;
    let floors = experiment::floors(&env).await?;
    let bin_dir = bin_dir()?;
    let log_dir = args.env.run_dir.join("logs");
    let mut measured: Vec<Measured> = Vec::new();
    for protocol in protocols {
        measured.push(
            experiment::measure(&env, &scenario, protocol, &floors, &bin_dir, &log_dir).await?,
        );
    }
    env.stop();
    let summary = Summary {
        command,
        started_at: started_at.to_rfc3339(),
        scenario: Some(scenario.clone()),
        environment,
        floors,
        kafka_tuning: ClientTuning::default(),
        runs: measured.iter().map(|m| m.run.clone()).collect(),
    };
    let dir = args.results_dir.join(format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        scenario.name
    ));
    crate::report::write(&dir, &summary, &measured)?;
    Ok((dir, summary))
}

/// `sweep`: one protocol at each offered rate in turn (open loop), one environment, one report.
pub async fn sweep(args: &SweepArgs, command: String) -> Result<(PathBuf, Summary), LoadgenError> {
    let compare = &args.run.compare;
    let mut scenario = Scenario::load(&compare.scenario, &scenarios_dir())?;
    if let Some(seed) = compare.seed {
        scenario.seed = seed;
    }
    if let Some(rate) = args
        .rates
        .iter()
        .find(|r| !(**r > 0.0 && **r <= 1_000_000.0))
    {
        return Err(LoadgenError::BadFlag {
            flag: "--rates",
            reason: format!("each rate must be in (0, 1000000] orders/s, got {rate}"),
        });
    }
    let started_at = chrono::Utc::now();
    let mut environment = Environment::read();
    let env = LabEnv::start(&LabEnvConfig::new(&compare.env.run_dir)).await?;
    environment.postgres = postgres_version(&env).await;
    let floors = experiment::floors(&env).await?;
    let (bin_dir, log_dir) = (bin_dir()?, compare.env.run_dir.join("logs"));
    let mut measured = Vec::new();
    for rate in &args.rates {
        let mut at_rate = scenario.clone();
        at_rate.load.mode = LoadMode::Open;
        at_rate.load.rate = Some(*rate);
        at_rate.load.clients = None;
        eprintln!("sweep: {} orders/s", rate);
        measured.push(
            experiment::measure(
                &env,
                &at_rate,
                args.run.protocol,
                &floors,
                &bin_dir,
                &log_dir,
            )
            .await?,
        );
    }
    env.stop();
    let summary = Summary {
        command,
        started_at: started_at.to_rfc3339(),
        scenario: Some(scenario.clone()),
        environment,
        floors,
        kafka_tuning: ClientTuning::default(),
        runs: measured.iter().map(|m| m.run.clone()).collect(),
    };
    let name = format!(
        "{}-sweep-{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        scenario.name,
        args.run.protocol.name()
    );
    let dir = compare.results_dir.join(name);
    crate::report::write_sweep(&dir, &summary)?;
    Ok((dir, summary))
}

/// `probe`: the floors alone.
pub async fn probe(args: &EnvArgs) -> Result<Floors, LoadgenError> {
    let env = LabEnv::start(&LabEnvConfig::new(&args.run_dir)).await?;
    let floors = experiment::floors(&env).await?;
    env.stop();
    Ok(floors)
}

async fn postgres_version(env: &LabEnv) -> String {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(&env.postgres.url("postgres")).await {
        Ok(mut conn) => sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}
