//! A 2PC participant: one service (order, payment or inventory) on its own database, serving
//! `Participant` and `Metrics` over gRPC, resolving its in-doubt branches from the coordinator.

pub mod prepared;
pub mod resolver;
pub mod service;

use crate::branch::ServiceKind;
use crate::error::TwoPcError;
use common::api::twopc_pb::coordinator_client::CoordinatorClient;
use common::api::twopc_pb::participant_server::ParticipantServer;
use common::metrics::{MetricsRegistry, MetricsServer};
use prepared::PreparedBranches;
use resolver::InDoubtResolver;
use service::ParticipantService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct ParticipantConfig {
    pub service: ServiceKind,
    pub database_url: String,
    /// The coordinator's `Decision` endpoint, e.g. `http://127.0.0.1:7000`.
    pub coordinator_url: String,
    /// How long a prepared branch waits for a decision before asking the coordinator.
    pub ask_after: Duration,
    pub pool_size: u32,
}

/// Connections kept for COMMIT/ROLLBACK PREPARED, apart from the prepares' pool.
const DECISION_POOL_SIZE: u32 = 8;

/// Serves until `shutdown` completes. Branches found prepared at start-up are resolved first
/// thing, through the coordinator.
pub async fn run(
    config: ParticipantConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TwoPcError> {
    let pool = common::storage::connect_migrated(
        config.service.store(),
        &config.database_url,
        config.pool_size,
    )
    .await?;
    let metrics = MetricsRegistry::new(format!("participant/{}", config.service.as_str()));
    metrics.set_setting("twopc.ask_after_ms", config.ask_after.as_millis());
    common::storage::record_pool_settings(&metrics, config.pool_size);
    metrics.set_setting("db.decision_pool_size", DECISION_POOL_SIZE);
    // Decisions get connections of their own: queued behind prepares that wait for row locks,
    // the COMMIT PREPARED that would release those rows could not run.
    let decisions = common::storage::connect(
        config.service.store(),
        &config.database_url,
        DECISION_POOL_SIZE,
    )
    .await?;
    let branches = PreparedBranches::new(config.service.as_str(), decisions, metrics.clone());
    let recovered = branches.recover().await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "found prepared branches from before the restart; asking the coordinator"
        );
    }
    let endpoint = tonic::transport::Endpoint::from_shared(config.coordinator_url.clone())
        .map_err(|e| {
            TwoPcError::BadRequest(format!("--coordinator {:?}: {e}", config.coordinator_url))
        })?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true);
    let coordinator = CoordinatorClient::new(endpoint.connect_lazy());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let resolver = InDoubtResolver::new(
        branches.clone(),
        coordinator,
        metrics.clone(),
        config.ask_after,
    );
    let resolver_task = tokio::spawn(resolver.run(stop_rx));

    let service = ParticipantService {
        service: config.service,
        pool,
        branches,
        metrics: metrics.clone(),
    };
    tracing::info!(service = config.service.as_str(), addr = ?listener.local_addr().ok(), "participant serving");
    let result = common::net::server_builder()
        .tcp_nodelay(true)
        .add_service(ParticipantServer::new(service))
        .add_service(MetricsServer::new(metrics))
        .serve_with_incoming_shutdown(common::net::nodelay_incoming(listener), shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = resolver_task.await;
    Ok(result?)
}
