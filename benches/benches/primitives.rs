//! The primitives every protocol's floor is built from (DESIGN §6), measured exactly as the load
//! generator's probe measures them before each run (`loadgen::run::primitives`), on the local
//! environment: a gRPC round trip on loopback, a PostgreSQL single-row INSERT with its durable
//! COMMIT, a 2PC branch's least database work (UPDATE, PREPARE TRANSACTION, COMMIT PREPARED), and
//! a Kafka hop (idempotent producer, acks=all, until the consumer has the message).
//!
//! cargo bench --bench primitives

use common::env::testing::shared_env;
use criterion::{criterion_group, criterion_main, Criterion};
use loadgen::run::primitives::{GrpcNoop, KafkaHop, PgCommit, PgPrepareCommit, Primitive};
use loadgen::run::probe::ProbeTargets;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Criterion's iterations of one primitive, timed by the primitive itself (a Kafka hop leaves
/// the producer's ack out of its time, as the runs do).
fn timed(runtime: &Runtime, iters: u64, primitive: &mut impl Primitive) -> Duration {
    runtime.block_on(async {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += primitive.once().await.expect("the primitive works");
        }
        total
    })
}

fn primitives(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let (mut grpc, mut commit, mut prepare, mut hop) = runtime.block_on(async {
        let env = shared_env().await;
        let targets = ProbeTargets::local(env)
            .await
            .expect("the probe's database");
        let bootstrap = targets.kafka.clone().expect("the lab's broker");
        (
            GrpcNoop::start().await.expect("a no-op gRPC server"),
            PgCommit::open(&targets.database_url)
                .await
                .expect("a PostgreSQL connection"),
            PgPrepareCommit::open(&targets.database_url)
                .await
                .expect("a PostgreSQL connection"),
            KafkaHop::open(&bootstrap).await.expect("a Kafka topic"),
        )
    });
    let mut group = c.benchmark_group("primitive");
    group.sample_size(30);
    group.bench_function("grpc_round_trip", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, &mut grpc))
    });
    group.bench_function("pg_insert_commit", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, &mut commit))
    });
    group.bench_function("pg_update_prepare_commit_prepared", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, &mut prepare))
    });
    group.bench_function("kafka_hop", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, &mut hop))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = txlab_benches::budget();
    targets = primitives
}
criterion_main!(benches);
