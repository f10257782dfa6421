//! The 2PC coordinator process.

use anyhow::Context;
use clap::Parser;
use std::time::Duration;
use twopc::branch::ServiceKind;
use twopc::coordinator::{run, CoordinatorConfig, PrepareOrder};

#[derive(Parser)]
#[command(
    about = "2PC coordinator: serves OrderApi and Coordinator.Decision, forces decisions to its log"
)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,
    /// The decision log's database.
    #[arg(long)]
    database_url: String,
    /// A participant, as SERVICE=URL (order, payment, inventory); give all three.
    #[arg(long = "participant", value_parser = parse_participant, required = true)]
    participants: Vec<(ServiceKind, String)>,
    /// Longest wait for a vote, in milliseconds; silence is NO.
    #[arg(long, default_value_t = 500)]
    prepare_timeout_ms: u64,
    /// Prepare all participants at once, or one after another in a fixed order (deadlock-free).
    #[arg(long, value_enum, default_value = "parallel")]
    prepare_order: PrepareOrder,
    /// Client deadline when a request names none, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    default_deadline_ms: u64,
    #[arg(long, default_value_t = 32)]
    pool_size: u32,
    /// Transactions admitted at once; more wait while a whole prepare timeout still fits before
    /// their deadline, then are ABORTED as overloaded. Keep participants × this below
    /// PostgreSQL's max_prepared_transactions when the participants share a server.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
}

fn parse_participant(text: &str) -> Result<(ServiceKind, String), String> {
    let (service, url) = text
        .split_once('=')
        .ok_or("expected SERVICE=URL, e.g. payment=http://127.0.0.1:7002")?;
    let service = <ServiceKind as clap::ValueEnum>::from_str(service, true)
        .map_err(|_| format!("unknown service {service:?}"))?;
    Ok((service, url.to_string()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::process::init_tracing(common::process::SERVER_LOG_FILTER, true);
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let config = CoordinatorConfig {
        database_url: args.database_url,
        participants: args.participants,
        prepare_timeout: Duration::from_millis(args.prepare_timeout_ms),
        prepare_order: args.prepare_order,
        default_deadline: Duration::from_millis(args.default_deadline_ms),
        pool_size: args.pool_size,
        max_in_flight: args.max_in_flight as usize,
    };
    run(config, listener, common::process::stop_requested()).await?;
    Ok(())
}
