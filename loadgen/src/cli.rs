//! The command line (clap derive).

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Measures two-phase commit against sagas on real PostgreSQL and Kafka."
)]
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
    /// Run one protocol under closed-loop load and print latency, throughput, lock-hold and the
    /// checker's verdict.
    ///
    /// Example: loadgen run --clients 32 --orders 5000 --sku-skew 1.0
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the local environment keeps its data and logs (reused: a warm start).
    #[arg(long, default_value = ".lab/env")]
    pub run_dir: PathBuf,
    /// Concurrent clients (closed loop: each waits for its answer before the next order).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub clients: usize,
    /// Orders measured.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub orders: usize,
    /// Orders placed first and not measured.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).map(|v| v as usize))]
    pub warmup: usize,
    /// Seed of the data set and the workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub customers: u32,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub skus: u32,
    /// Zipf exponent of SKU popularity (0 = uniform; 1 = a few hot SKUs).
    #[arg(long, default_value_t = 0.0)]
    pub sku_skew: f64,
    /// The client's deadline per order, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub deadline_ms: u64,
    /// 2PC: longest wait for a vote, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub prepare_timeout_ms: u64,
    /// 2PC: prepare all participants at once, or in a fixed order.
    #[arg(long, value_enum, default_value = "parallel")]
    pub prepare_order: twopc::coordinator::PrepareOrder,
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
