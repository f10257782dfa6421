//! The order, payment and inventory services: their state changes (one module each), how they
//! react in each mode, and the process that runs one of them.

pub mod commands;
pub mod deadlines;
pub mod events;
pub mod front;
pub mod inventory;
pub mod order;
pub mod payment;

use crate::config::{AdmissionPolicy, KafkaSettings, Mode, ServiceKind, StepPolicy};
use crate::consumer::{self, ConsumerSpec};
use crate::error::SagaError;
use crate::outbox::{OutboxRelay, RelayHandle, RelayPolicy};
use crate::server::{essential, front_admission, requested, shutdown_channel};
use crate::waiters::OutcomeWaiters;
use common::api::OrderApiServer;
use common::metrics::{MetricsRegistry, MetricsServer};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How to run one service process.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub kind: ServiceKind,
    pub mode: Mode,
    /// The service's own database.
    pub database_url: String,
    pub kafka: KafkaSettings,
    /// Choreography's order service: the saga deadline after which it requests a cancel.
    pub policy: StepPolicy,
    /// Choreography's order service: its front's admission limit.
    pub admission: AdmissionPolicy,
    /// Parallel consumer lanes (partitions handled at once).
    pub lanes: usize,
    pub db_connections: u32,
}

/// What every handler of a service shares.
#[derive(Clone)]
pub struct ServiceContext {
    pub kind: ServiceKind,
    pub pool: PgPool,
    pub kafka: KafkaSettings,
    pub relay: RelayHandle,
    pub metrics: MetricsRegistry,
}

/// Runs the service until `shutdown`: its consumer, its outbox relay and its gRPC endpoint
/// (metrics; in choreography the order service also serves `OrderApi` and watches deadlines).
pub async fn run<F>(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), SagaError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let pool = common::storage::connect_migrated(
        config.kind.store(),
        &config.database_url,
        config.db_connections,
    )
    .await?;
    let kafka = &config.kafka;
    crate::orchestrator::ensure_topics(kafka).await?;
    let mode = match config.mode {
        Mode::Orchestrated => "orchestrated",
        Mode::Choreographed => "choreographed",
    };
    let metrics = MetricsRegistry::new(format!("saga-{mode}/{}", config.kind.as_str()));
    if config.mode == Mode::Choreographed {
        metrics.set_setting(
            "saga.step_timeout_ms",
            config.policy.step_timeout.as_millis(),
        );
    }
    metrics.set_setting("saga.lanes", config.lanes);
    common::storage::record_pool_settings(&metrics, config.db_connections);
    let policy = RelayPolicy {
        publish_twice: kafka.publish_twice,
        ..RelayPolicy::default()
    };
    let outbox = OutboxRelay::new(
        pool.clone(),
        &kafka.bootstrap,
        &kafka.tuning,
        policy,
        metrics.clone(),
    )?;
    let ctx = ServiceContext {
        kind: config.kind,
        pool: pool.clone(),
        kafka: kafka.clone(),
        relay: outbox.handle(),
        metrics: metrics.clone(),
    };
    let (stop, stopped) = shutdown_channel(shutdown);
    let relay_task = tokio::spawn(outbox.run(stopped.clone()));

    let waiters = OutcomeWaiters::default();
    let spec = |topic: String| ConsumerSpec {
        bootstrap: kafka.bootstrap.clone(),
        group: kafka.group(config.kind.as_str()),
        topics: vec![topic],
        tuning: kafka.tuning.clone(),
        lanes: config.lanes,
    };
    let consumer_task = match config.mode {
        Mode::Orchestrated => {
            let handler = Arc::new(commands::CommandHandler { ctx: ctx.clone() });
            tokio::spawn(essential(
                consumer::run(
                    spec(kafka.topics.commands(config.kind)),
                    handler,
                    metrics.clone(),
                    stopped.clone(),
                ),
                stop.clone(),
            ))
        }
        Mode::Choreographed => {
            let handler = Arc::new(events::EventHandler {
                ctx: ctx.clone(),
                waiters: waiters.clone(),
            });
            tokio::spawn(essential(
                consumer::run(
                    spec(kafka.topics.events()),
                    handler,
                    metrics.clone(),
                    stopped.clone(),
                ),
                stop.clone(),
            ))
        }
    };

    let choreography_front =
        config.mode == Mode::Choreographed && config.kind == ServiceKind::Order;
    let deadline_task = choreography_front.then(|| {
        tokio::spawn(deadlines::watch(
            ctx.clone(),
            config.policy.clone(),
            stopped.clone(),
        ))
    });
    let front = choreography_front.then(|| {
        OrderApiServer::new(front::ChoreographyFront {
            ctx: ctx.clone(),
            waiters,
            admission: front_admission(&config.admission, &metrics),
        })
    });
    tracing::info!(service = config.kind.as_str(), mode, addr = ?listener.local_addr().ok(), "saga service running");
    let served = common::net::server_builder()
        .add_service(MetricsServer::new(metrics))
        .add_optional_service(front)
        .serve_with_incoming_shutdown(
            common::net::nodelay_incoming(listener),
            requested(stopped.clone()),
        )
        .await;
    let _ = stop.send(true);
    let consumed = consumer_task.await;
    let _ = relay_task.await;
    if let Some(task) = deadline_task {
        let _ = task.await;
    }
    served?;
    match consumed {
        Ok(result) => result,
        Err(join) => Err(SagaError::Config(format!("consumer task panicked: {join}"))),
    }
}
