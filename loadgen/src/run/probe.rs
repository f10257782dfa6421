//! The physical floors (DESIGN §6): the primitives both protocols are built from, measured in the
//! same environment and run as the protocols, and each protocol's floor composed from them. A
//! report shows latency / floor, so a reader sees overhead, not the machine.

use crate::run::noop_server::{serve, NoopOrderApi};
use crate::scenario::Protocol;
use common::api::pb::PlaceOrderRequest;
use common::api::OrderApiClient;
use common::env::LabEnv;
use common::kafka_clients::{
    create_topics, idempotent_producer_config, manual_commit_consumer_config, ClientTuning,
};
use common::metrics::{new_histogram, record};
use common::storage::quote_literal;
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, PgConnection};
use std::time::{Duration, Instant};
use twopc::coordinator::PrepareOrder;

/// Median costs of the primitives, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Floors {
    /// One unary gRPC call: on loopback to a server that does nothing, or (deployed) to the
    /// deployment's front with an empty order, which it refuses before any work.
    pub grpc_round_trip_us: f64,
    /// What the gRPC round trip was measured against.
    #[serde(default)]
    pub grpc_against: String,
    /// One single-row INSERT and its durable COMMIT.
    pub pg_commit_us: f64,
    /// One single-row UPDATE, PREPARE TRANSACTION and COMMIT PREPARED.
    pub pg_prepare_commit_us: f64,
    /// Produce (idempotent, acks=all) → consume of one small message.
    pub kafka_hop_us: f64,
    /// How many times each primitive was measured.
    pub samples: u32,
    /// Not measured for this run: its probe failed and the previous run's floors stand in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

/// How each protocol's floor is composed from the primitives, for the report; 2PC's depends on
/// whether the coordinator prepares its participants at once or one after another.
pub fn composition(protocol: Protocol, prepare: PrepareOrder) -> &'static str {
    match protocol {
        Protocol::Twopc if prepare == PrepareOrder::Ordered => "5 gRPC round trips (client, 3 Prepares one after another, Commit) + 1 PREPARE/COMMIT PREPARED + 1 forced log write",
        Protocol::Twopc => "3 gRPC round trips (client, Prepare, Commit) + 1 PREPARE/COMMIT PREPARED + 1 forced log write",
        Protocol::SagaOrchestrated => "1 gRPC round trip + 10 Kafka hops (5 commands, 5 replies) + 11 local commits (the front's, then a service's and the orchestrator's per step)",
        Protocol::SagaChoreographed => "1 gRPC round trip + 4 Kafka hops + 5 local commits",
    }
}

impl Floors {
    /// The least a committed order can take under `protocol`, in microseconds.
    pub fn floor_us(&self, protocol: Protocol, prepare: PrepareOrder) -> f64 {
        match protocol {
            Protocol::Twopc => {
                // Ordered: the three Prepare round trips are serial. (Their PREPAREs are too,
                // but a Prepare-only primitive is not measured, so they count once: the floor
                // stays a lower bound.)
                let round_trips = match prepare {
                    PrepareOrder::Ordered => 5.0,
                    PrepareOrder::Parallel => 3.0,
                };
                round_trips * self.grpc_round_trip_us
                    + self.pg_prepare_commit_us
                    + self.pg_commit_us
            }
            Protocol::SagaOrchestrated => {
                self.grpc_round_trip_us + 10.0 * self.kafka_hop_us + 11.0 * self.pg_commit_us
            }
            Protocol::SagaChoreographed => {
                self.grpc_round_trip_us + 4.0 * self.kafka_hop_us + 5.0 * self.pg_commit_us
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probing PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("probing Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("probing gRPC: {0}")]
    Grpc(String),
    #[error("probing Kafka: no message came back within {0:?}")]
    KafkaTimeout(Duration),
}

/// An error and its causes on one line (tonic's transport errors say little on their own).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn median(h: &Histogram<u64>) -> f64 {
    h.value_at_quantile(0.5) as f64
}

/// Where the primitives are measured.
pub struct ProbeTargets {
    /// A scratch database the probe creates its `probe` table in.
    pub database_url: String,
    /// Kafka bootstrap servers; `None` when nothing deployed runs on Kafka (the hop is 0).
    pub kafka: Option<String>,
    /// A deployment's `OrderApi` front; `None`: a no-op server on loopback.
    pub grpc_front: Option<String>,
}

impl ProbeTargets {
    /// The local environment: a `probe` database of the lab cluster, its broker, a no-op server.
    pub async fn local(env: &LabEnv) -> Result<ProbeTargets, ProbeError> {
        let mut admin = PgConnection::connect(&env.postgres.url("postgres")).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'probe')")
                .fetch_one(&mut admin)
                .await?;
        if !exists {
            admin.execute("CREATE DATABASE probe").await?;
        }
        Ok(ProbeTargets {
            database_url: env.postgres.url("probe"),
            kafka: Some(env.bootstrap_servers()),
            grpc_front: None,
        })
    }
}

/// Measures every primitive `samples` times, one at a time.
pub async fn measure(targets: &ProbeTargets, samples: u32) -> Result<Floors, ProbeError> {
    let (grpc_round_trip_us, grpc_against) = match &targets.grpc_front {
        None => (
            grpc_noop(samples).await?,
            "loopback, no-op server".to_string(),
        ),
        Some(front) => (
            grpc_front(front, samples).await?,
            format!("{front}, an empty order it refuses"),
        ),
    };
    let kafka_hop_us = match &targets.kafka {
        Some(bootstrap) => kafka_hop(bootstrap, samples).await?,
        None => 0.0,
    };
    Ok(Floors {
        grpc_round_trip_us,
        grpc_against,
        pg_commit_us: pg_commit(&targets.database_url, samples).await?,
        pg_prepare_commit_us: pg_prepare_commit(&targets.database_url, samples).await?,
        kafka_hop_us,
        samples,
        reused: false,
    })
}

async fn grpc_noop(samples: u32) -> Result<f64, ProbeError> {
    let (addr, _stop) = serve(NoopOrderApi::default())
        .await
        .map_err(|e| ProbeError::Grpc(e.to_string()))?;
    let mut client = OrderApiClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| ProbeError::Grpc(e.to_string()))?;
    let mut h = new_histogram();
    for _ in 0..samples {
        let started = Instant::now();
        client
            .place_order(PlaceOrderRequest::default())
            .await
            .map_err(|e| ProbeError::Grpc(e.to_string()))?;
        record(&mut h, started.elapsed());
    }
    Ok(median(&h))
}

/// A deployed front's round trip: an empty order is refused (InvalidArgument) by validation,
/// before any database or broker work, so the call costs the network and the gRPC stack only.
async fn grpc_front(front: &str, samples: u32) -> Result<f64, ProbeError> {
    let mut client = OrderApiClient::connect(front.to_string())
        .await
        .map_err(|e| {
            ProbeError::Grpc(format!(
                "cannot reach the deployment's front {front} ({}); is the deployment up?",
                with_causes(&e)
            ))
        })?;
    let mut h = new_histogram();
    for _ in 0..samples {
        let started = Instant::now();
        match client.place_order(PlaceOrderRequest::default()).await {
            Err(status) if status.code() == tonic::Code::InvalidArgument => {}
            other => {
                return Err(ProbeError::Grpc(format!(
                    "{front} answered an empty order with {other:?}, not InvalidArgument: is it an OrderApi front?"
                )))
            }
        }
        record(&mut h, started.elapsed());
    }
    Ok(median(&h))
}

/// The scratch table, emptied, on its own connection.
async fn probe_connection(database_url: &str) -> Result<PgConnection, ProbeError> {
    let mut conn = PgConnection::connect(database_url).await?;
    conn.execute("CREATE TABLE IF NOT EXISTS probe (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .await?;
    conn.execute("TRUNCATE probe").await?;
    conn.execute("INSERT INTO probe VALUES (0, 0)").await?;
    Ok(conn)
}

async fn pg_commit(database_url: &str, samples: u32) -> Result<f64, ProbeError> {
    let mut conn = probe_connection(database_url).await?;
    let mut h = new_histogram();
    for i in 1..=i64::from(samples) {
        let started = Instant::now();
        sqlx::query("INSERT INTO probe VALUES ($1, 0)")
            .bind(i)
            .execute(&mut conn)
            .await?;
        record(&mut h, started.elapsed());
    }
    Ok(median(&h))
}

async fn pg_prepare_commit(database_url: &str, samples: u32) -> Result<f64, ProbeError> {
    let mut conn = probe_connection(database_url).await?;
    let mut h = new_histogram();
    for i in 0..samples {
        let gid = quote_literal(&format!("probe-{i}-{}", uuid::Uuid::new_v4().simple()));
        let started = Instant::now();
        conn.execute("BEGIN").await?;
        conn.execute("UPDATE probe SET v = v + 1 WHERE id = 0")
            .await?;
        conn.execute(format!("PREPARE TRANSACTION {gid}").as_str())
            .await?;
        conn.execute(format!("COMMIT PREPARED {gid}").as_str())
            .await?;
        record(&mut h, started.elapsed());
    }
    Ok(median(&h))
}

/// The next message. A topic created a moment ago can be missing from the consumer's first
/// metadata (more so on a broker that is still recovering its logs): that error is transient.
async fn receive(consumer: &StreamConsumer) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match consumer.recv().await {
            Ok(_) => return Ok(()),
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Messages sent before the hop is measured: the first waits for the group to form, and a
/// freshly started broker's JVM serves its first requests slowly (interpreted, not yet
/// compiled), which the protocols' runs, coming after a warm-up, never see.
const KAFKA_WARMUP_MESSAGES: u32 = 200;

/// Produce → consume of one message, timed as the runs time `kafka.hop`: from handing the
/// message to the producer until the consumer has it. The producer's ack is awaited after the
/// receipt, off the measured path: the consumer can read a message once the broker has
/// appended it, and the relay's wait for the ack is counted in `relay.delay`, not in the hop.
/// (Awaiting the ack before reading, as this probe once did, measured 1.6–3.2 ms against
/// 0.6–1.0 ms for the hops inside the runs.)
async fn kafka_hop(bootstrap: &str, samples: u32) -> Result<f64, ProbeError> {
    let topic = format!("probe-{}", uuid::Uuid::new_v4().simple());
    create_topics(bootstrap, &[&topic], 1).await?;
    let tuning = ClientTuning::default();
    let producer: FutureProducer = idempotent_producer_config(bootstrap, &tuning).create()?;
    let group = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer =
        manual_commit_consumer_config(bootstrap, &group, &tuning).create()?;
    consumer.subscribe(&[&topic])?;
    let mut h = new_histogram();
    let limit = Duration::from_secs(30);
    for i in 0..KAFKA_WARMUP_MESSAGES + samples {
        let payload = i.to_string();
        let started = Instant::now();
        let ack = producer.send(
            FutureRecord::to(&topic).key("probe").payload(&payload),
            Duration::from_secs(10),
        );
        tokio::pin!(ack);
        let received = tokio::time::timeout(limit, receive(&consumer));
        tokio::pin!(received);
        // Usually the message arrives first; a failed delivery ends the wait at once with its
        // own error instead of the receive's time-out.
        let mut acked = false;
        let hop = loop {
            tokio::select! {
                r = &mut received => {
                    r.map_err(|_| ProbeError::KafkaTimeout(limit))??;
                    break started.elapsed();
                }
                a = &mut ack, if !acked => {
                    a.map_err(|(e, _)| e)?;
                    acked = true;
                }
            }
        };
        if !acked {
            ack.await.map_err(|(e, _)| e)?;
        }
        if i >= KAFKA_WARMUP_MESSAGES {
            record(&mut h, hop);
        }
    }
    Ok(median(&h))
}
