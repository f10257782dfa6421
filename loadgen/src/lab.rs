//! `compare`, `run` and `probe`: the environment, the floors, each protocol in turn, the report.

use crate::cli::{CompareArgs, ProbeArgs, SweepArgs, TargetArgs};
use crate::deployed::Deployment;
use crate::experiment::{self, Lab, Measured};
use crate::probe::Floors;
use crate::scenario::{LoadMode, Protocol, Scenario};
use crate::summary::{Environment, Summary};
use crate::LoadgenError;
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

/// Where the protocol binaries are: beside `loadgen`, or, for a test binary in
/// `target/<profile>/deps/`, one level up, where cargo puts the workspace's binaries.
pub(crate) fn bin_dir() -> Result<PathBuf, LoadgenError> {
    let exe = std::env::current_exe().map_err(|source| LoadgenError::Io {
        what: "locating loadgen",
        source,
    })?;
    let dir = exe.parent().expect("an executable lives in a directory");
    Ok(match dir.parent() {
        Some(up) if dir.ends_with("deps") => up.to_path_buf(),
        _ => dir.to_path_buf(),
    })
}

/// The local environment, or the deployment `--deployment` names after checking it can run
/// `protocols` of `scenario` (before anything starts).
async fn open_lab(
    env: &crate::cli::EnvArgs,
    target: &TargetArgs,
    scenario: &Scenario,
    protocols: &[Protocol],
) -> Result<Lab, LoadgenError> {
    match &target.deployment {
        None => Lab::start(&env.run_dir, !scenario.faults.is_empty()).await,
        Some(path) => {
            let deployment = Deployment::load(path)?;
            deployment.check_scenario(scenario, protocols, path)?;
            Ok(Lab::Deployed(deployment))
        }
    }
}

/// Runs `protocols` (all of the scenario's when `None`) and writes the report; returns its folder.
pub async fn compare(
    args: &CompareArgs,
    only: Option<Protocol>,
    command: String,
) -> Result<(PathBuf, Summary), LoadgenError> {
    let mut scenario = Scenario::load(&args.scenario, &scenarios_dir())?;
    if let Some(seed) = args.seed {
        scenario.reseed(seed, Path::new(&args.scenario))?;
    }
    let protocols = match only {
        Some(p) => vec![p],
        None => scenario.protocols.clone(),
    };
    let started_at = chrono::Utc::now();
    let mut environment = Environment::read();
    let mut lab = open_lab(&args.env, &args.target, &scenario, &protocols).await?;
    environment.postgres = postgres_version(&lab.any_database_url()).await;
    environment.set_deployment(args.target.deployment.as_deref());
    let floors = experiment::floors(&lab).await?;
    let bin_dir = bin_dir()?;
    let log_dir = args.env.run_dir.join("logs");
    let mut measured: Vec<Measured> = Vec::new();
    for protocol in protocols {
        measured.push(
            experiment::measure(&mut lab, &scenario, protocol, &floors, &bin_dir, &log_dir).await?,
        );
    }
    lab.stop();
    let summary = summarize(
        command,
        started_at,
        &scenario,
        environment,
        floors,
        &measured,
    );
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
        scenario.reseed(seed, Path::new(&compare.scenario))?;
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
    let mut lab = open_lab(
        &compare.env,
        &compare.target,
        &scenario,
        &[args.run.protocol],
    )
    .await?;
    environment.postgres = postgres_version(&lab.any_database_url()).await;
    environment.set_deployment(compare.target.deployment.as_deref());
    let floors = experiment::floors(&lab).await?;
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
                &mut lab,
                &at_rate,
                args.run.protocol,
                &floors,
                &bin_dir,
                &log_dir,
            )
            .await?,
        );
    }
    lab.stop();
    let summary = summarize(
        command,
        started_at,
        &scenario,
        environment,
        floors,
        &measured,
    );
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

/// What `summary.json` holds for a set of measured runs.
fn summarize(
    command: String,
    started_at: chrono::DateTime<chrono::Utc>,
    scenario: &Scenario,
    environment: Environment,
    floors: Floors,
    measured: &[Measured],
) -> Summary {
    Summary {
        command,
        started_at: started_at.to_rfc3339(),
        scenario: Some(scenario.clone()),
        environment,
        floors,
        kafka_tuning: ClientTuning::default(),
        runs: measured.iter().map(|m| m.run.clone()).collect(),
    }
}

/// `probe`: the floors alone, in the local environment or a deployment.
pub async fn probe(args: &ProbeArgs) -> Result<Floors, LoadgenError> {
    let lab = match &args.target.deployment {
        None => Lab::start(&args.env.run_dir, false).await?,
        Some(path) => Lab::Deployed(Deployment::load(path)?),
    };
    let floors = experiment::floors(&lab).await?;
    lab.stop();
    Ok(floors)
}

pub(crate) async fn postgres_version(url: &str) -> String {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(mut conn) => sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}
