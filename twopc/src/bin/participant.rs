//! A 2PC participant process: one service on its own database.

use anyhow::Context;
use clap::Parser;
use std::time::Duration;
use twopc::branch::ServiceKind;
use twopc::participant::{run, ParticipantConfig};

#[derive(Parser)]
#[command(about = "2PC participant: prepares branches as PostgreSQL prepared transactions")]
struct Args {
    #[arg(long, value_enum)]
    service: ServiceKind,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: String,
    /// This service's own database.
    #[arg(long)]
    database_url: String,
    /// The coordinator, asked for decisions when in doubt.
    #[arg(long)]
    coordinator: String,
    /// How long a prepared branch waits for a decision before asking, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    ask_after_ms: u64,
    #[arg(long, default_value_t = 32)]
    pool_size: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::process::init_tracing(common::process::SERVER_LOG_FILTER, true);
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let config = ParticipantConfig {
        service: args.service,
        database_url: args.database_url,
        coordinator_url: args.coordinator,
        ask_after: Duration::from_millis(args.ask_after_ms),
        pool_size: args.pool_size,
    };
    run(config, listener, common::process::stop_requested()).await?;
    Ok(())
}
