//! `compare`, `run` and `probe`: the environment, the floors, each protocol in turn, the report.

use crate::cli::{CompareArgs, ProbeArgs, SweepArgs, TargetArgs};
use crate::report::summary::{Environment, Summary};
use crate::run::deployed::Deployment;
use crate::run::environment::{self, Lab};
use crate::run::experiment::{self, Measured};
use crate::run::probe::Floors;
use crate::scenario::{LoadMode, Protocol, Scenario};
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

/// The protocols' binaries the lab starts from [`bin_dir`].
pub const PROTOCOL_BINARIES: [&str; 4] = [
    "coordinator",
    "participant",
    "saga-service",
    "saga-orchestrator",
];

/// Those of [`PROTOCOL_BINARIES`] not in `dir`.
pub fn missing_binaries(dir: &Path) -> Vec<PathBuf> {
    PROTOCOL_BINARIES
        .iter()
        .map(|program| dir.join(program))
        .filter(|path| !path.is_file())
        .collect()
}

/// Where the protocol binaries are: beside `loadgen`, or, for a test or bench binary in
/// `target/<profile>/deps/`, one level up, where cargo puts the workspace's binaries.
pub fn bin_dir() -> Result<PathBuf, LoadgenError> {
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
        None => Lab::start(&env.run_dir, scenario.topology, !scenario.faults.is_empty()).await,
        Some(path) => {
            let deployment = Deployment::load(path)?;
            deployment.check_scenario(scenario, protocols, path)?;
            deployment.check_reachable(protocols, path).await?;
            Ok(Lab::Deployed(Box::new(deployment)))
        }
    }
}

/// The scenario as the command line asks for it: loaded, reseeded, its load overridden.
fn scenario_for(args: &CompareArgs) -> Result<Scenario, LoadgenError> {
    let mut scenario = Scenario::load(&args.scenario, &scenarios_dir())?;
    if let Some(topology) = args.env.topology {
        scenario.topology = topology;
    }
    if let Some(seed) = args.seed {
        scenario.reseed(seed, Path::new(&args.scenario))?;
    }
    scenario
        .override_load(&args.load)
        .map_err(|(field, reason)| crate::scenario::ScenarioError::Invalid {
            path: Path::new(&args.scenario).to_path_buf(),
            field,
            reason,
        })?;
    Ok(scenario)
}

/// Runs `protocols` (all of the scenario's when `None`) and writes the report; returns its folder.
pub async fn compare(
    args: &CompareArgs,
    only: Option<Protocol>,
    command: String,
) -> Result<(PathBuf, Summary), LoadgenError> {
    let scenario = scenario_for(args)?;
    let protocols = match only {
        Some(p) => vec![p],
        None => scenario.protocols.clone(),
    };
    let started_at = chrono::Utc::now();
    let mut environment = Environment::read();
    let mut lab = open_lab(&args.env, &args.target, &scenario, &protocols).await?;
    observe_systems(&mut environment, &lab).await;
    environment.set_deployment(args.target.deployment.as_deref());
    let bin_dir = bin_dir()?;
    let log_dir = args.env.run_dir.join("logs");
    let repeat = scenario.load.repeat;
    let mut measured: Vec<Measured> = Vec::new();
    for k in 1..=repeat {
        for &protocol in &protocols {
            if repeat > 1 {
                eprintln!("{} run {k} of {repeat}", protocol.name());
            }
            let run = (k, repeat);
            let next = measure_once(
                &mut lab, &scenario, protocol, run, &measured, &bin_dir, &log_dir,
            );
            measured.push(next.await?);
        }
    }
    let summary = conclude(lab, command, started_at, &scenario, environment, &measured);
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
    let scenario = scenario_for(compare)?;
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
    observe_systems(&mut environment, &lab).await;
    environment.set_deployment(compare.target.deployment.as_deref());
    let (bin_dir, log_dir) = (bin_dir()?, compare.env.run_dir.join("logs"));
    let repeat = scenario.load.repeat;
    let mut measured = Vec::new();
    for k in 1..=repeat {
        for rate in &args.rates {
            let mut at_rate = scenario.clone();
            at_rate.load.mode = LoadMode::Open;
            at_rate.load.rate = Some(*rate);
            at_rate.load.clients = None;
            eprintln!("sweep: {rate} orders/s, run {k} of {repeat}");
            let (protocol, run) = (args.run.protocol, (k, repeat));
            let next = measure_once(
                &mut lab, &at_rate, protocol, run, &measured, &bin_dir, &log_dir,
            );
            measured.push(next.await?);
        }
    }
    let summary = conclude(lab, command, started_at, &scenario, environment, &measured);
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

/// One run of `protocol`, with the floors measured right before it (they drift with the
/// machine's load, so a ratio to floors from minutes earlier would mislead); `k` of `repeat`.
/// A probe that fails after the first run reuses the `last` floors, marked as such, rather
/// Stops the lab and adds its runs up into one summary.
fn conclude(
    lab: Lab,
    command: String,
    started_at: chrono::DateTime<chrono::Utc>,
    scenario: &Scenario,
    environment: Environment,
    measured: &[Measured],
) -> Summary {
    lab.stop();
    let floors = first_floors(measured);
    summarize(command, started_at, scenario, environment, floors, measured)
}

/// than throwing away the runs already measured.
async fn measure_once(
    lab: &mut Lab,
    scenario: &Scenario,
    protocol: Protocol,
    (k, repeat): (u32, u32),
    earlier: &[Measured],
    bin_dir: &Path,
    log_dir: &Path,
) -> Result<Measured, LoadgenError> {
    let last = earlier.last().and_then(|m| m.run.floors.clone());
    let floors = match (environment::floors(lab).await, last) {
        (Ok(floors), _) => floors,
        (Err(e), Some(last)) => {
            tracing::warn!(error = %e, "probing the floors failed; this run reuses the last ones");
            Floors {
                reused: true,
                ..last
            }
        }
        (Err(e), None) => return Err(e),
    };
    let mut m = experiment::measure(lab, scenario, protocol, &floors, bin_dir, log_dir).await?;
    m.run.repetition = (repeat > 1).then_some(k);
    m.run.floors = Some(floors);
    Ok(m)
}

/// The floors of the first run, which summary.json keeps at its top level as before.
fn first_floors(measured: &[Measured]) -> Floors {
    measured
        .first()
        .and_then(|m| m.run.floors.clone())
        .unwrap_or_default()
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
        None => {
            let topology = args.env.topology.unwrap_or_default();
            Lab::start(&args.env.run_dir, topology, false).await?
        }
        Some(path) => Lab::Deployed(Box::new(Deployment::load(path)?)),
    };
    let floors = environment::floors(&lab).await?;
    lab.stop();
    Ok(floors)
}

/// What the servers themselves say: PostgreSQL's version and settings, the broker's settings.
pub(crate) async fn observe_systems(environment: &mut Environment, lab: &Lab) {
    observe_postgres(environment, &lab.any_database_url()).await;
    if let Lab::Local(local) = lab {
        environment.disk = crate::report::summary::describe_disk(local.env.postgres.data_dir());
    }
    if let Some(bootstrap) = lab.kafka_bootstrap() {
        match common::kafka_clients::broker_configs(&bootstrap).await {
            Ok(configs) => environment.kafka_broker_configs = configs,
            Err(e) => tracing::warn!(error = %e, "the broker's settings could not be read"),
        }
    }
}

/// The settings a reader needs to judge durability and sizing, read from the server itself.
const POSTGRES_SETTINGS: [&str; 10] = [
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "max_prepared_transactions",
    "max_connections",
    "shared_buffers",
    "checkpoint_timeout",
    "max_wal_size",
    "autovacuum",
];

/// Records the server's version and settings as it reports them (`SHOW`); left empty, and so
/// shown as unknown, when it cannot be reached.
async fn observe_postgres(environment: &mut Environment, url: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return;
    };
    async fn show(conn: &mut sqlx::PgConnection, name: &str) -> Option<String> {
        sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
            .fetch_one(conn)
            .await
            .ok()
    }
    environment.postgres = show(&mut conn, "server_version").await.unwrap_or_default();
    for name in POSTGRES_SETTINGS {
        if let Some(value) = show(&mut conn, name).await {
            environment
                .postgres_settings
                .insert(name.to_string(), value);
        }
    }
}
