//! The physical floors (DESIGN §6): the primitives both protocols are built from, measured in the
//! same environment and run as the protocols, and each protocol's floor composed from them. A
//! report shows latency / floor, so a reader sees overhead, not the machine.

use crate::run::primitives::{GrpcFront, GrpcNoop, KafkaHop, PgCommit, PgPrepareCommit, Primitive};
use crate::scenario::Protocol;
use common::env::LabEnv;
use common::metrics::{new_histogram, record};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;
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
        None => {
            let mut grpc = GrpcNoop::start().await?;
            (
                median_of(samples, &mut grpc).await?,
                "loopback, no-op server".to_string(),
            )
        }
        Some(front) => {
            let mut grpc = GrpcFront::connect(front).await?;
            (
                median_of(samples, &mut grpc).await?,
                format!("{front}, an empty order it refuses"),
            )
        }
    };
    let kafka_hop_us = match &targets.kafka {
        Some(bootstrap) => {
            let mut hop = KafkaHop::open(bootstrap).await?;
            median_of(samples, &mut hop).await?
        }
        None => 0.0,
    };
    let mut commit = PgCommit::open(&targets.database_url).await?;
    let pg_commit_us = median_of(samples, &mut commit).await?;
    let mut prepare = PgPrepareCommit::open(&targets.database_url).await?;
    let pg_prepare_commit_us = median_of(samples, &mut prepare).await?;
    Ok(Floors {
        grpc_round_trip_us,
        grpc_against,
        pg_commit_us,
        pg_prepare_commit_us,
        kafka_hop_us,
        samples,
        reused: false,
    })
}

/// The median in µs of `samples` timings of `primitive`.
async fn median_of(samples: u32, primitive: &mut impl Primitive) -> Result<f64, ProbeError> {
    let mut h = new_histogram();
    for _ in 0..samples {
        record(&mut h, primitive.once().await?);
    }
    Ok(median(&h))
}
