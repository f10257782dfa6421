//! The command line (clap derive).

use crate::scenario::Protocol;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:
  loadgen compare --scenario quick              every protocol on scenarios/quick.toml, one report
  loadgen run --scenario contention --protocol twopc
  loadgen sweep --scenario quick --protocol twopc --rates 50,100,200,400
  loadgen soak --schedules 20 --seed 1        20 random fault schedules per protocol, checked
  loadgen probe                                 the floors: gRPC, PostgreSQL commit, 2PC prepare, Kafka hop
  loadgen check --seed 7                        seed a data set and run the invariant checker on it
  loadgen compare --scenario quick --deployment deploy/compose.toml
                                                drive `docker compose up` instead of a local lab
  loadgen env up --topology replicated --print-deployment > deploy.toml
                                                a local environment to drive with --deployment

Results go to results/runs/<time>-<scenario>/ (summary.json, timeline.csv, *.hlog, *.svg, report.md).";

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Measures two-phase commit against sagas on real PostgreSQL and Kafka, under the same load.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every protocol of a scenario on the same data and load; write one report.
    Compare(CompareArgs),
    /// Run one protocol of a scenario; write its report.
    Run(RunArgs),
    /// Step the offered rate (open loop) for one protocol; plot latency against throughput.
    Sweep(SweepArgs),
    /// Measure the floors (the primitives every protocol is built from) in a fresh environment.
    Probe(ProbeArgs),
    /// Many short randomized fault schedules per protocol, the invariant checker after each;
    /// exits non-zero on any violation or lost order.
    Soak(SoakArgs),
    /// Install what the lab needs (PostgreSQL, Java, Maven, the Kafka jars): scripts/setup.sh.
    Setup,
    /// Start the local environment, seed a fresh data set and run the invariant checker on it.
    Check(CheckArgs),
    /// The local environment on its own.
    #[command(subcommand)]
    Env(EnvCommand),
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Start PostgreSQL and Kafka (--topology), create every protocol's databases and keep them
    /// up until Ctrl-C or SIGTERM; `--print-deployment > deploy.toml` writes the deployment
    /// file that drives them (`compare --deployment deploy.toml` starts the protocols here).
    Up(EnvUpArgs),
}

#[derive(Debug, Args)]
pub struct EnvUpArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Print the deployment file on stdout (then close stdout), every protocol `start = "here"`.
    #[arg(long)]
    pub print_deployment: bool,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Where the local environment keeps its data and logs (reused: a warm start).
    #[arg(long, default_value = ".lab/env")]
    pub run_dir: PathBuf,
    /// The local environment's shape: `single` (one broker, one PostgreSQL cluster) or
    /// `replicated` (3 brokers with replication factor 3, a PostgreSQL cluster per owner).
    /// Overrides the scenario's `topology`.
    #[arg(long, value_parser = parse_topology)]
    pub topology: Option<common::env::Topology>,
}

fn parse_topology(text: &str) -> Result<common::env::Topology, String> {
    match text {
        "single" => Ok(common::env::Topology::Single),
        "replicated" => Ok(common::env::Topology::Replicated),
        _ => Err(format!("expected single or replicated, got {text:?}")),
    }
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Where the protocols run: the local environment (default) or a deployment.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Drive a deployment the lab does not own, e.g. `docker compose up` with
    /// deploy/compose.toml: its fronts, metrics endpoints and databases are named in this TOML
    /// file. Nothing local is started; scenarios with [[faults]] need the local environment.
    #[arg(long, value_name = "FILE")]
    pub deployment: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A scenario name from scenarios/ (quick, contention, failures, …) or a path to a .toml file.
    #[arg(long, default_value = "quick")]
    pub scenario: String,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where result folders go.
    #[arg(long, default_value = "results/runs")]
    pub results_dir: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub env: EnvArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Overrides of the scenario's `[load]`, as wrk2 and oha users expect; recorded in the run's
/// scenario, so the report shows what really ran.
#[derive(Debug, Default, Args)]
pub struct LoadArgs {
    /// Offered orders per second (open loop): `[load] rate`.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured seconds: `[load] duration_s`.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Concurrent clients (closed loop): `[load] clients`.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Seconds of load before measuring: `[load] warmup_s`.
    #[arg(long, value_name = "SECONDS")]
    pub warmup: Option<u64>,
    /// Runs per protocol, interleaved, reported as median and range: `[load] repeat`.
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub compare: CompareArgs,
    /// The protocol to run.
    #[arg(long, value_enum)]
    pub protocol: Protocol,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Offered rates, orders per second, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![20.0, 40.0, 80.0, 160.0, 320.0])]
    pub rates: Vec<f64>,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// A scenario with a [random_faults] section (name from scenarios/ or a .toml path).
    #[arg(long, default_value = "random")]
    pub scenario: String,
    /// How many schedules to draw and run, each under every protocol.
    #[arg(long, default_value_t = 20)]
    pub schedules: u64,
    /// Seed of the first schedule; schedule k uses seed + k (and replays with
    /// `compare --scenario <scenario> --seed <seed + k>`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only these protocols (comma-separated); default: the scenario's.
    #[arg(long = "protocols", value_enum, value_delimiter = ',')]
    pub protocols: Vec<Protocol>,
    /// Where the soak's folder goes.
    #[arg(long, default_value = "results/runs")]
    pub results_dir: PathBuf,
    #[command(flatten)]
    pub env: EnvArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Seed of the data set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of customers (wallets).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub customers: u32,
    /// Number of SKUs.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub skus: u32,
    /// Write the checker's report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
