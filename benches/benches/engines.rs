//! The engines' hot paths, without the protocols' gRPC services: the 2PC decision log's group
//! commit (on the lab's real PostgreSQL, the one durable write 2PC adds), a saga outbox relay
//! batch (commit → hand-off → idempotent producer → the lab's real broker → a consumer), the
//! orchestrated saga's state machine and message codec, HdrHistogram record and merge (every
//! measured order), and scenario parsing.
//!
//! cargo bench --bench engines

use common::domain::{Cents, CustomerId, Order, OrderId, OrderLine, RejectReason, Sku};
use common::env::testing::{fresh_databases, shared_env};
use common::kafka_clients::{create_topics, manual_commit_consumer_config, ClientTuning};
use common::metrics::MetricsRegistry;
use common::storage::Store;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use hdrhistogram::Histogram;
use loadgen::scenario::Scenario;
use rdkafka::consumer::{Consumer, StreamConsumer};
use saga::machine::{Saga, Transition};
use saga::message::{Body, Envelope, StepResult};
use saga::outbox::{OutboxRelay, RelayPolicy, Staged};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use twopc::coordinator::decision_log::DecisionLog;

fn order(lines: i32) -> Order {
    Order::new(
        OrderId::new_random(),
        CustomerId(1),
        (1..=lines)
            .map(|i| OrderLine {
                sku: Sku(i),
                qty: 2,
                unit_price: Cents(199),
            })
            .collect(),
    )
    .expect("a valid order")
}

/// `waiting` decisions handed to the log at once, until every one is durable: the writer takes
/// all that wait into one INSERT and one fsync'd COMMIT.
fn decision_log_group_commit(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let log = runtime.block_on(async {
        shared_env().await;
        let (urls, _) = fresh_databases("bench_decision_log").await;
        let pool = common::storage::connect_migrated(Store::Coordinator, &urls.coordinator, 4)
            .await
            .expect("the coordinator's database");
        DecisionLog::start(pool, MetricsRegistry::new("bench"))
    });
    let participants = ["order", "payment", "inventory"];
    let mut group = c.benchmark_group("decision_log_group_commit");
    group.sample_size(20);
    for waiting in [1u64, 8, 64] {
        group.throughput(Throughput::Elements(waiting));
        group.bench_function(BenchmarkId::from_parameter(waiting), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let decisions = (0..waiting).map(|_| {
                            let id = uuid::Uuid::new_v4();
                            let log = &log;
                            async move {
                                log.force_commit(&id.to_string(), id, &participants)
                                    .await
                                    .expect("the decision is durable")
                            }
                        });
                        join_all(decisions).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// `rows` outbox rows written in one transaction, committed and handed to the relay, until a
/// consumer of their topic has every one: the latency path of a saga step's messages.
fn outbox_relay_batch(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let (pool, handle, consumer, topic, _stop) = runtime.block_on(async {
        let env = shared_env().await;
        let (urls, _) = fresh_databases("bench_outbox_relay").await;
        let pool = common::storage::connect_migrated(Store::Orchestrator, &urls.orchestrator, 4)
            .await
            .expect("the orchestrator's database");
        let bootstrap = env.bootstrap_servers();
        let topic = format!("bench-relay-{}", uuid::Uuid::new_v4().simple());
        create_topics(&bootstrap, &[&topic], 1)
            .await
            .expect("the bench's topic");
        let tuning = ClientTuning::default();
        let relay = OutboxRelay::new(
            pool.clone(),
            &bootstrap,
            &tuning,
            RelayPolicy::default(),
            MetricsRegistry::new("bench"),
        )
        .expect("a relay");
        let handle = relay.handle();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(relay.run(stopped));
        let group = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = manual_commit_consumer_config(&bootstrap, &group, &tuning)
            .create()
            .expect("a consumer");
        consumer.subscribe(&[&topic]).expect("subscribed");
        (pool, handle, consumer, topic, stop)
    });
    let batch = |rows: u64| {
        let (pool, handle, consumer, topic) = (&pool, &handle, &consumer, &topic);
        async move {
            let mut tx = pool.begin().await.expect("a transaction");
            let mut staged = Staged::default();
            let (_, first) = Saga::start(order(2));
            for _ in 0..rows {
                let envelope = Envelope::new(OrderId::new_random(), Body::Command(first.clone()));
                staged
                    .enqueue(&mut tx, topic, &envelope)
                    .await
                    .expect("an outbox row");
            }
            let started = Instant::now();
            tx.commit().await.expect("committed");
            handle.committed(staged);
            for _ in 0..rows {
                tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                    .await
                    .expect("the relay publishes within 30 s")
                    .expect("a message");
            }
            started.elapsed()
        }
    };
    // The consumer joins its group and the broker warms up before anything is timed.
    runtime.block_on(async {
        for _ in 0..100 {
            batch(1).await;
        }
    });
    let mut group = c.benchmark_group("outbox_relay_batch");
    group.sample_size(20);
    for rows in [1u64, 32] {
        group.throughput(Throughput::Elements(rows));
        group.bench_function(BenchmarkId::from_parameter(rows), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += batch(rows).await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

/// Every transition of a saga from start to its end: the happy path (5 replies) and a payment
/// refusal compensated (5 replies), as the orchestrator applies them.
fn saga_machine(c: &mut Criterion) {
    let refused = StepResult::Rejected {
        reason: RejectReason::InsufficientFunds,
    };
    let mut group = c.benchmark_group("saga_machine");
    for (name, replies) in [
        ("happy_path", [StepResult::Done; 5]),
        (
            "payment_refused",
            [
                StepResult::Done,
                StepResult::Done,
                refused,
                StepResult::Done,
                StepResult::Done,
            ],
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let (mut saga, _) = Saga::start(order(3));
                for result in replies {
                    let step = saga.state.awaited_step().expect("not final yet");
                    match saga.on_reply(step, result) {
                        Transition::Advance { saga: next, .. } => saga = next,
                        Transition::Stale => panic!("the awaited step's reply is never stale"),
                    }
                }
                black_box(saga.outcome())
            })
        });
    }
    group.finish();
}

/// A saga message as it goes on the wire and comes off it: the first command of an order.
fn saga_message_codec(c: &mut Criterion) {
    let (_, first) = Saga::start(order(3));
    let envelope = Envelope::new(OrderId::new_random(), Body::Command(first));
    let bytes = envelope.encode();
    let mut group = c.benchmark_group("saga_message");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| black_box(&envelope).encode()));
    group.bench_function("decode", |b| {
        b.iter(|| Envelope::decode(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

/// What every measured order costs the recorder, and what the report pays per process and run.
fn histograms(c: &mut Criterion) {
    let mut group = c.benchmark_group("histogram");
    let mut h = common::metrics::new_histogram();
    let mut value = 1_000u64;
    group.bench_function("record", |b| {
        b.iter(|| {
            value = value * 1_103_515_245 % 10_000_000 + 1;
            common::metrics::record(&mut h, Duration::from_micros(black_box(value)));
        })
    });
    let filled = |seed: u64| -> Histogram<u64> {
        let mut h = common::metrics::new_histogram();
        let mut v = seed;
        for _ in 0..10_000 {
            v = v.wrapping_mul(6_364_136_223_846_793_005) % 60_000_000 + 1;
            h.record(v).expect("in range");
        }
        h
    };
    let (a, other) = (filled(3), filled(5));
    group.bench_function("merge_10k_values", |b| {
        b.iter(|| {
            let mut merged = a.clone();
            merged.add(black_box(&other)).expect("same bounds");
            merged
        })
    });
    group.finish();
}

/// Every shipped scenario, parsed and validated.
fn scenario_parsing(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the scenarios directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable scenario");
            (p.display().to_string(), text)
        })
        .collect();
    files.sort();
    c.bench_function("scenario_parse_all_shipped", |b| {
        b.iter(|| {
            for (path, text) in &files {
                black_box(Scenario::parse(text, Path::new(path)).expect("a valid scenario"));
            }
        })
    });
}

criterion_group!(
    name = benches;
    config = txlab_benches::budget();
    targets = saga_machine,
    saga_message_codec,
    histograms,
    scenario_parsing,
    decision_log_group_commit,
    outbox_relay_batch
);
criterion_main!(benches);
