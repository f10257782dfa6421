//! The saga orchestrator process: serves `OrderApi` and `Metrics` on `--listen`.

use clap::Parser;
use saga::config::StepPolicy;
use saga::orchestrator::{run, OrchestratorConfig};
use std::time::Duration;

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
    /// How long a step may go unanswered before it is re-sent (ms).
    #[arg(long, default_value_t = 5000)]
    step_timeout_ms: u64,
    /// Sends of a forward step before the saga compensates.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Parallel consumer lanes.
    #[arg(long, default_value_t = 4)]
    lanes: usize,
    #[arg(long, default_value_t = 16)]
    db_connections: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga::cli::init_tracing();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let config = OrchestratorConfig {
        database_url: args.database_url,
        kafka: args.kafka.settings(),
        policy: StepPolicy {
            step_timeout: Duration::from_millis(args.step_timeout_ms),
            max_attempts: args.max_attempts,
        },
        lanes: args.lanes,
        db_connections: args.db_connections,
    };
    run(config, listener, saga::cli::termination()).await?;
    Ok(())
}
