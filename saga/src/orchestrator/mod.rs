//! The saga orchestrator: serves `OrderApi`, keeps every saga's state in its own database, sends
//! commands through its outbox, reacts to replies, and re-drives steps whose deadline passed —
//! which is also how it resumes every open saga after a restart.

pub mod engine;
pub mod front;
pub mod replies;
pub mod saga_log;
pub mod store;

use crate::config::{AdmissionPolicy, KafkaSettings, StepPolicy};
use crate::consumer::{self, ConsumerSpec};
use crate::error::SagaError;
use crate::outbox::{OutboxRelay, RelayPolicy};
use crate::server::{essential, front_admission, requested, shutdown_channel};
use common::api::OrderApiServer;
use common::metrics::{MetricsRegistry, MetricsServer};
use common::storage::Store;
use engine::Engine;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct OrchestratorConfig {
    /// The orchestrator's own database (`sagas`, outbox, processed messages).
    pub database_url: String,
    pub kafka: KafkaSettings,
    pub policy: StepPolicy,
    pub admission: AdmissionPolicy,
    pub lanes: usize,
    pub db_connections: u32,
}

/// Creates every saga topic with the configured partitions (existing ones are kept).
pub async fn ensure_topics(kafka: &KafkaSettings) -> Result<(), SagaError> {
    let topics = kafka.topics.all();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    common::kafka_clients::create_topics(&kafka.bootstrap, &names, kafka.partitions)
        .await
        .map_err(|source| SagaError::Kafka {
            what: "creating topics",
            source,
        })
}

/// Runs the orchestrator until `shutdown`.
pub async fn run<F>(
    config: OrchestratorConfig,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), SagaError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let pool = common::storage::connect_migrated(
        Store::Orchestrator,
        &config.database_url,
        config.db_connections,
    )
    .await?;
    ensure_topics(&config.kafka).await?;
    let metrics = MetricsRegistry::new("saga-orchestrated/orchestrator");
    metrics.set_setting(
        "saga.step_timeout_ms",
        config.policy.step_timeout.as_millis(),
    );
    metrics.set_setting("saga.max_attempts", config.policy.max_attempts);
    metrics.set_setting("saga.lanes", config.lanes);
    common::storage::record_pool_settings(&metrics, config.db_connections);
    let kafka = &config.kafka;
    let policy = RelayPolicy {
        publish_twice: kafka.publish_twice,
        ..RelayPolicy::default()
    };
    let relay = OutboxRelay::new(
        pool.clone(),
        &kafka.bootstrap,
        &kafka.tuning,
        policy,
        metrics.clone(),
    )?;
    let engine = Engine::new(
        Arc::new(saga_log::PgSagaLog {
            pool: pool.clone(),
            relay: relay.handle(),
        }),
        kafka.clone(),
        config.policy.clone(),
        metrics.clone(),
    );
    let open = store::count_open(&pool).await?;
    tracing::info!(
        open_sagas = open,
        "orchestrator starting; open sagas resume as their deadlines pass"
    );
    let (stop, stopped) = shutdown_channel(shutdown);
    let relay_task = tokio::spawn(relay.run(stopped.clone()));
    let timer_task = tokio::spawn(engine.clone().run_timer(stopped.clone()));
    let spec = ConsumerSpec {
        bootstrap: kafka.bootstrap.clone(),
        group: kafka.group("orchestrator"),
        topics: vec![kafka.topics.replies()],
        tuning: kafka.tuning.clone(),
        lanes: config.lanes,
    };
    let handler = Arc::new(replies::ReplyHandler {
        engine: engine.clone(),
    });
    let consumer_task = tokio::spawn(essential(
        consumer::run(spec, handler, metrics.clone(), stopped.clone()),
        stop.clone(),
    ));

    tracing::info!(addr = ?listener.local_addr().ok(), "orchestrator serving OrderApi and Metrics");
    let served = common::net::server_builder()
        .add_service(OrderApiServer::new(front::OrchestratorFront {
            admission: front_admission(&config.admission, &metrics),
            engine,
        }))
        .add_service(MetricsServer::new(metrics))
        .serve_with_incoming_shutdown(
            common::net::nodelay_incoming(listener),
            requested(stopped.clone()),
        )
        .await;
    let _ = stop.send(true);
    let consumed = consumer_task.await;
    let _ = relay_task.await;
    let _ = timer_task.await;
    served?;
    match consumed {
        Ok(result) => result,
        Err(join) => Err(SagaError::Config(format!("consumer task panicked: {join}"))),
    }
}
