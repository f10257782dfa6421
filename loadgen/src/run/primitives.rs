//! The primitives the floors are built from (DESIGN §6), one operation at a time, each timed the
//! way the protocols use it. The probe takes a run's floors as their medians; `cargo bench`
//! (`benches/primitives.rs`) runs the very same operations under criterion.

use super::probe::ProbeError;
use crate::run::noop_server::{serve, NoopOrderApi};
use common::api::pb::PlaceOrderRequest;
use common::api::OrderApiClient;
use common::kafka_clients::{
    create_topics, idempotent_producer_config, manual_commit_consumer_config, ClientTuning,
};
use common::storage::quote_literal;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{Connection, Executor, PgConnection};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// One timed operation.
#[allow(async_fn_in_trait)] // used generically, never as `dyn` or across a spawn
pub trait Primitive {
    /// Does the operation once and says how long it took.
    async fn once(&mut self) -> Result<Duration, ProbeError>;
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

/// One unary gRPC call on loopback to a server that does nothing.
pub struct GrpcNoop {
    client: OrderApiClient<Channel>,
    _stop: oneshot::Sender<()>,
}

impl GrpcNoop {
    pub async fn start() -> Result<GrpcNoop, ProbeError> {
        let (addr, stop) = serve(NoopOrderApi::default())
            .await
            .map_err(|e| ProbeError::Grpc(e.to_string()))?;
        let client = OrderApiClient::connect(format!("http://{addr}"))
            .await
            .map_err(|e| ProbeError::Grpc(with_causes(&e)))?;
        Ok(GrpcNoop {
            client,
            _stop: stop,
        })
    }
}

impl Primitive for GrpcNoop {
    async fn once(&mut self) -> Result<Duration, ProbeError> {
        let started = Instant::now();
        self.client
            .place_order(PlaceOrderRequest::default())
            .await
            .map_err(|e| ProbeError::Grpc(e.to_string()))?;
        Ok(started.elapsed())
    }
}

/// A deployed front's round trip: an empty order is refused (InvalidArgument) by validation,
/// before any database or broker work, so the call costs the network and the gRPC stack only.
pub struct GrpcFront {
    client: OrderApiClient<Channel>,
    front: String,
}

impl GrpcFront {
    pub async fn connect(front: &str) -> Result<GrpcFront, ProbeError> {
        let client = OrderApiClient::connect(front.to_string())
            .await
            .map_err(|e| {
                ProbeError::Grpc(format!(
                    "cannot reach the deployment's front {front} ({}); is the deployment up?",
                    with_causes(&e)
                ))
            })?;
        Ok(GrpcFront {
            client,
            front: front.to_string(),
        })
    }
}

impl Primitive for GrpcFront {
    async fn once(&mut self) -> Result<Duration, ProbeError> {
        let started = Instant::now();
        match self.client.place_order(PlaceOrderRequest::default()).await {
            Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(started.elapsed()),
            other => Err(ProbeError::Grpc(format!(
                "{} answered an empty order with {other:?}, not InvalidArgument: is it an OrderApi front?",
                self.front
            ))),
        }
    }
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

/// One single-row INSERT and its durable COMMIT (autocommit: one round trip).
pub struct PgCommit {
    conn: PgConnection,
    next_id: i64,
}

impl PgCommit {
    /// On `database_url`'s `probe` table, which it empties.
    pub async fn open(database_url: &str) -> Result<PgCommit, ProbeError> {
        Ok(PgCommit {
            conn: probe_connection(database_url).await?,
            next_id: 1,
        })
    }
}

impl Primitive for PgCommit {
    async fn once(&mut self) -> Result<Duration, ProbeError> {
        let started = Instant::now();
        sqlx::query("INSERT INTO probe VALUES ($1, 0)")
            .bind(self.next_id)
            .execute(&mut self.conn)
            .await?;
        self.next_id += 1;
        Ok(started.elapsed())
    }
}

/// One single-row UPDATE, PREPARE TRANSACTION and COMMIT PREPARED: a 2PC branch's database work
/// at its least.
pub struct PgPrepareCommit {
    conn: PgConnection,
}

impl PgPrepareCommit {
    /// On `database_url`'s `probe` table, which it empties.
    pub async fn open(database_url: &str) -> Result<PgPrepareCommit, ProbeError> {
        Ok(PgPrepareCommit {
            conn: probe_connection(database_url).await?,
        })
    }
}

impl Primitive for PgPrepareCommit {
    async fn once(&mut self) -> Result<Duration, ProbeError> {
        let gid = quote_literal(&format!("probe-{}", uuid::Uuid::new_v4().simple()));
        let started = Instant::now();
        self.conn.execute("BEGIN").await?;
        self.conn
            .execute("UPDATE probe SET v = v + 1 WHERE id = 0")
            .await?;
        self.conn
            .execute(format!("PREPARE TRANSACTION {gid}").as_str())
            .await?;
        self.conn
            .execute(format!("COMMIT PREPARED {gid}").as_str())
            .await?;
        Ok(started.elapsed())
    }
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

/// How long one message may take to come back before the hop counts as failed.
const KAFKA_LIMIT: Duration = Duration::from_secs(30);

/// Produce → consume of one message on a topic of its own, timed as the runs time
/// `kafka.hop`: from handing the message to the producer until the consumer has it. The
/// producer's ack is awaited after the receipt, off the measured path: the consumer can read a
/// message once the broker has appended it, and the relay's wait for the ack is counted in
/// `relay.delay`, not in the hop. (Awaiting the ack before reading, as this probe once did,
/// measured 1.6–3.2 ms against 0.6–1.0 ms for the hops inside the runs.)
pub struct KafkaHop {
    producer: FutureProducer,
    consumer: StreamConsumer,
    topic: String,
    sent: u64,
}

impl KafkaHop {
    /// A fresh topic and consumer group on `bootstrap`, the lab's client settings, and
    /// [`KAFKA_WARMUP_MESSAGES`] sent and received before it returns.
    pub async fn open(bootstrap: &str) -> Result<KafkaHop, ProbeError> {
        let topic = format!("probe-{}", uuid::Uuid::new_v4().simple());
        create_topics(bootstrap, &[&topic], 1).await?;
        let tuning = ClientTuning::default();
        let producer: FutureProducer = idempotent_producer_config(bootstrap, &tuning).create()?;
        let group = format!("probe-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer =
            manual_commit_consumer_config(bootstrap, &group, &tuning).create()?;
        consumer.subscribe(&[&topic])?;
        let mut hop = KafkaHop {
            producer,
            consumer,
            topic,
            sent: 0,
        };
        for _ in 0..KAFKA_WARMUP_MESSAGES {
            hop.once().await?;
        }
        Ok(hop)
    }
}

impl Primitive for KafkaHop {
    async fn once(&mut self) -> Result<Duration, ProbeError> {
        let payload = self.sent.to_string();
        self.sent += 1;
        let started = Instant::now();
        let ack = self.producer.send(
            FutureRecord::to(&self.topic).key("probe").payload(&payload),
            Duration::from_secs(10),
        );
        tokio::pin!(ack);
        let received = tokio::time::timeout(KAFKA_LIMIT, receive(&self.consumer));
        tokio::pin!(received);
        // Usually the message arrives first; a failed delivery ends the wait at once with its
        // own error instead of the receive's time-out.
        let mut acked = false;
        let hop = loop {
            tokio::select! {
                r = &mut received => {
                    r.map_err(|_| ProbeError::KafkaTimeout(KAFKA_LIMIT))??;
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
        Ok(hop)
    }
}
