//! One order end to end, one at a time, for every protocol on the local environment: a real
//! PostgreSQL and a real Kafka broker (started once for this binary), each protocol's real
//! processes started as the load generator starts them and reused across iterations, orders sent
//! through the same client API. `<protocol>/spread` draws 1–3 lines over 100 SKUs;
//! `<protocol>/hot_sku` puts every order on SKU 1, so each one locks the row the previous one
//! just released. Every order must come back COMMITTED, and the databases must pass the
//! invariant checker afterwards, or the bench fails.
//!
//! cargo bench --bench protocols      (the bench builds the protocols' binaries first)

use common::api::pb::{self, OutcomeKind};
use common::api::OrderApiClient;
use common::datagen::{DataSet, DataSetSpec};
use common::domain::{CustomerId, Order, OrderId, OrderLine, Sku};
use common::env::testing::{fresh_databases, shared_env};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use loadgen::run::lab;
use loadgen::run::protocols::Running;
use loadgen::scenario::{Protocol, Scenario};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

const CUSTOMERS: u32 = 1_000;
const SKUS: u32 = 100;

/// Funds and stock for far more orders than a full `cargo bench` places.
fn data_set() -> DataSet {
    DataSet::generate(&DataSetSpec {
        seed: 14,
        customers: CUSTOMERS,
        skus: SKUS,
        balance_cents: (1_000_000_000, 2_000_000_000),
        stock: (1_000_000, 2_000_000),
        price_cents: (100, 5_000),
    })
    .expect("a valid data set")
}

/// `target/<profile>/`, where cargo puts the workspace's binaries beside `deps/`, with the
/// protocols' binaries built there first: `cargo bench` builds bench targets and the libraries
/// they link, not the other packages' binaries these benches start. Cargo has released its build
/// lock by the time a bench runs, so this nested build proceeds, and it is a no-op when the
/// binaries are fresh (the whole workspace's `--bins`, so features resolve as in any build).
fn bin_dir() -> PathBuf {
    let dir = lab::bin_dir().expect("the bench knows its path");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut build = Command::new(cargo);
    build
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["build", "--workspace", "--bins", "--locked"]);
    // `cargo bench` builds in the bench profile (into target/release); building the binaries in
    // the same profile reuses every library it compiled.
    if dir.file_name().is_some_and(|p| p == "release") {
        build.args(["--profile", "bench"]);
    }
    let status = build.status().expect("cargo runs");
    assert!(
        status.success(),
        "building the protocols' binaries failed: {status}"
    );
    let missing = lab::missing_binaries(&dir);
    assert!(
        missing.is_empty(),
        "{missing:?} missing after `cargo build --bins`"
    );
    dir
}

/// The protocols as the benches name them, with the scenario that configures each.
fn variants() -> Vec<(&'static str, &'static str, Protocol, &'static str)> {
    vec![
        ("twopc", "parallel", Protocol::Twopc, "parallel"),
        ("twopc", "ordered", Protocol::Twopc, "ordered"),
        (
            "saga",
            "orchestrated",
            Protocol::SagaOrchestrated,
            "parallel",
        ),
        (
            "saga",
            "choreographed",
            Protocol::SagaChoreographed,
            "parallel",
        ),
    ]
}

fn scenario(prepare_order: &str) -> Scenario {
    let text = format!(
        "name = \"bench\"\ndeadline_ms = 10000\n\n[twopc]\nprepare_order = \"{prepare_order}\"\n"
    );
    Scenario::parse(&text, Path::new("bench.toml")).expect("the bench's scenario is valid")
}

/// Draws orders: spread over every SKU, or all on SKU 1.
struct Orders {
    data: DataSet,
    next: u64,
}

impl Orders {
    fn next(&mut self, hot: bool) -> Order {
        self.next += 1;
        let n = self.next;
        let customer = CustomerId((n % u64::from(CUSTOMERS)) as i32 + 1);
        let skus: Vec<i32> = if hot {
            vec![1]
        } else {
            let lines = (n % 3) as i32 + 1;
            (0..lines)
                .map(|i| ((n as i32).wrapping_mul(7919) + i * 37).rem_euclid(SKUS as i32) + 1)
                .collect()
        };
        let mut lines: Vec<OrderLine> = Vec::new();
        for sku in skus {
            if lines.iter().any(|l| l.sku.0 == sku) {
                continue;
            }
            let item = self.data.stock[sku as usize - 1];
            lines.push(OrderLine {
                sku: Sku(sku),
                qty: 1,
                unit_price: item.price,
            });
        }
        Order::new(OrderId::new_random(), customer, lines).expect("a valid order")
    }
}

async fn place(client: &mut OrderApiClient<Channel>, order: &Order) -> Duration {
    let mut request = pb::PlaceOrderRequest::from(order);
    request.deadline_ms = 10_000;
    let started = Instant::now();
    let outcome = client
        .place_order(request)
        .await
        .expect("the front answers")
        .into_inner();
    let took = started.elapsed();
    assert_eq!(
        outcome.kind,
        OutcomeKind::Committed as i32,
        "an order the data set can afford must commit: {outcome:?}"
    );
    took
}

fn end_to_end(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let bins = bin_dir();
    let env = runtime.block_on(shared_env());
    let data = data_set();
    for (group_name, variant, protocol, prepare_order) in variants() {
        let name = format!("bench_{group_name}_{variant}");
        let (urls, dbs) = runtime.block_on(fresh_databases(&name));
        runtime
            .block_on(dbs.reset_and_seed(&data))
            .expect("seeding the bench's databases");
        let log_dir = env.run_dir().join(&name);
        let running = runtime
            .block_on(Running::start(
                protocol,
                &scenario(prepare_order),
                &env.bootstrap_servers(),
                urls,
                &bins,
                &log_dir,
                false,
                None,
            ))
            .unwrap_or_else(|e| panic!("{group_name}/{variant} did not start: {e}"));
        let mut client = runtime
            .block_on(OrderApiClient::connect(running.url()))
            .expect("the front is reachable");
        let mut orders = Orders {
            data: data.clone(),
            next: 0,
        };
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10);
        // A fresh broker compiles its hot paths during the first seconds of saga traffic.
        group.warm_up_time(Duration::from_secs(if group_name == "saga" {
            10
        } else {
            2
        }));
        group.measurement_time(Duration::from_secs(6));
        for (label, hot) in [("spread", false), ("hot_sku", true)] {
            group.bench_function(BenchmarkId::new(variant, label), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += place(&mut client, &orders.next(hot)).await;
                        }
                        total
                    })
                })
            });
        }
        group.finish();
        let report = runtime
            .block_on(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                common::checker::check(&dbs, &data).await
            })
            .expect("the checker reads the databases");
        assert!(
            report.is_clean(),
            "{group_name}/{variant} broke an invariant: {:?}",
            report.describe()
        );
        drop(running);
    }
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
