//! The command line (clap derive).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about = "Measures two-phase commit against sagas on real PostgreSQL and Kafka.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the local environment, seed a fresh data set and run the invariant checker on it.
    ///
    /// Example: loadgen check --seed 7 --customers 5000
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Where the local environment keeps its data and logs (reused: a warm start).
    #[arg(long, default_value = ".lab/env")]
    pub run_dir: PathBuf,
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
