//! One saga service process (order, payment or inventory) in either mode; serves `Metrics` (and,
//! for the choreographed order service, `OrderApi`) on `--listen`.

use clap::Parser;
use saga::services::{run, ServiceConfig};
use saga::{Mode, ServiceKind};

#[derive(Parser)]
#[command(
    about = "Saga service: executes commands (orchestrated) or reacts to events (choreographed)"
)]
struct Args {
    #[arg(long, value_enum)]
    service: ServiceKind,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Address for gRPC (Metrics; OrderApi for the choreographed order service).
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The service's own database URL.
    #[arg(long)]
    database_url: String,
    #[command(flatten)]
    kafka: saga::cli::KafkaArgs,
    /// Choreography's order service: the saga deadline derives from these.
    #[command(flatten)]
    steps: saga::cli::StepArgs,
    #[command(flatten)]
    admission: saga::cli::AdmissionArgs,
    /// Parallel consumer lanes.
    #[arg(long, default_value_t = 4)]
    lanes: usize,
    #[arg(long, default_value_t = 16)]
    db_connections: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::process::init_tracing(common::process::SERVER_LOG_FILTER, true);
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let config = ServiceConfig {
        kind: args.service,
        mode: args.mode,
        database_url: args.database_url,
        kafka: args.kafka.settings(),
        policy: args.steps.policy(),
        admission: args.admission.policy(),
        lanes: args.lanes,
        db_connections: args.db_connections,
    };
    run(config, listener, common::process::stop_requested()).await?;
    Ok(())
}
