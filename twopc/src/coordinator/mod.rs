//! The 2PC coordinator: serves the client API, drives the participants, forces its decisions to
//! its own database, and re-drives unfinished commits after a restart.

pub mod committer;
pub mod decision_log;
pub mod participants;
pub mod ports;
pub mod service;
pub mod transactions;

pub use committer::PrepareOrder;

use crate::branch::ServiceKind;
use crate::error::TwoPcError;
use committer::Committer;
use common::api::twopc_pb::coordinator_server::CoordinatorServer;
use common::api::OrderApiServer;
use common::metrics::{MetricsRegistry, MetricsServer};
use common::storage::Store;
use decision_log::DecisionLog;
use participants::ParticipantLink;
use ports::Participant;
use service::CoordinatorService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// The decision log's database.
    pub database_url: String,
    /// Each participant's URL, e.g. `(Payment, "http://127.0.0.1:7002")`.
    pub participants: Vec<(ServiceKind, String)>,
    /// Longest wait for a vote; silence is NO.
    pub prepare_timeout: Duration,
    /// Parallel or ordered Prepare (see [`PrepareOrder`]).
    pub prepare_order: PrepareOrder,
    /// The client's deadline when a request names none.
    pub default_deadline: Duration,
    pub pool_size: u32,
    /// Transactions admitted at once (`common::admission`). Each may hold one prepared branch
    /// per participant, so participants × this must stay below PostgreSQL's
    /// `max_prepared_transactions` when they share a server.
    pub max_in_flight: usize,
}

/// Serves until `shutdown` completes.
pub async fn run(
    config: CoordinatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TwoPcError> {
    let pool = common::storage::connect_migrated(
        Store::Coordinator,
        &config.database_url,
        config.pool_size,
    )
    .await?;
    let metrics = MetricsRegistry::new("coordinator");
    metrics.set_setting(
        "twopc.prepare_timeout_ms",
        config.prepare_timeout.as_millis(),
    );
    metrics.set_setting(
        "twopc.prepare_order",
        format!("{:?}", config.prepare_order).to_lowercase(),
    );
    metrics.set_setting(
        "twopc.default_deadline_ms",
        config.default_deadline.as_millis(),
    );
    common::storage::record_pool_settings(&metrics, config.pool_size);
    let log = DecisionLog::start(pool, metrics.clone());
    let links = config
        .participants
        .iter()
        .map(|(service, url)| {
            ParticipantLink::new(*service, url).map(|l| Arc::new(l) as Arc<dyn Participant>)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(TwoPcError::BadRequest)?;
    let committer = Committer::new(
        links,
        Arc::new(log.clone()),
        metrics.clone(),
        config.prepare_timeout,
        config.prepare_order,
        config.max_in_flight,
    );

    // Recovery: every COMMIT without END is re-sent until every participant acknowledges.
    let unfinished = log.unfinished().await?;
    if !unfinished.is_empty() {
        tracing::warn!(
            count = unfinished.len(),
            "re-driving logged commits from before the restart"
        );
    }
    for commit in unfinished {
        committer.recover(commit.gid);
    }

    let service = CoordinatorService {
        committer,
        default_deadline: config.default_deadline,
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "coordinator serving");
    common::net::server_builder()
        .tcp_nodelay(true)
        .add_service(OrderApiServer::new(service.clone()))
        .add_service(CoordinatorServer::new(service))
        .add_service(MetricsServer::new(metrics))
        .serve_with_incoming_shutdown(common::net::nodelay_incoming(listener), shutdown)
        .await?;
    Ok(())
}
