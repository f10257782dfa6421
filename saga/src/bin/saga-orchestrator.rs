//! The saga orchestrator process: serves `OrderApi` and `Metrics` on `--listen`.

use clap::Parser;
use saga::orchestrator::{run, OrchestratorConfig};

#[derive(Parser)]
#[command(
    about = "Saga orchestrator: drives order sagas over Kafka, state in its own PostgreSQL database"
)]
struct Args {
    /// Address for OrderApi and Metrics (gRPC).
    #[arg(long, default_value = "127.0.0.1:50070")]
    listen: std::net::SocketAddr,
    /// The orchestrator database URL.
    #[arg(long)]
    database_url: String,
    #[command(flatten)]
    kafka: saga::cli::KafkaArgs,
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
    let config = OrchestratorConfig {
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
