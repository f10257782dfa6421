//! Measurements for the closing note, not a correctness test (ignored by default): each mode at a
//! low load (one order in flight) and a saturating one (32 in flight), printing throughput and
//! the p50/p99 of every histogram each process recorded. Run it in release:
//! `cargo test --release -p txlab-saga --test measure -- --ignored --nocapture`.

#[path = "saga/harness.rs"]
mod harness;
#[path = "saga/inspect.rs"]
mod inspect;
#[path = "saga/workload.rs"]
mod workload;

use common::env::testing::{fresh_databases, shared_env};
use harness::Deployment;
use saga::Mode;
use std::time::Duration;

async fn measure(mode: Mode, orders: usize, concurrency: usize) {
    let env = shared_env().await;
    let name = format!("measure_{mode:?}_{concurrency}").to_lowercase();
    let (urls, dbs) = fresh_databases(&name).await;
    let mut lab = Deployment::new(
        &name,
        mode,
        urls,
        dbs,
        env.bootstrap_servers(),
        env.run_dir().join("saga-logs"),
    )
    .await;
    lab.start_all().await;
    // Warm-up: consumer groups joined, connections open; excluded from the figures.
    workload::run(&lab, workload::mixed(&lab.data, 20, 1), 4, 30_000).await;
    lab.wait_quiescent(Duration::from_secs(30)).await;
    for role in lab.roles() {
        lab.reset_metrics(role).await;
    }
    let result = workload::run(
        &lab,
        workload::mixed(&lab.data, orders, 2),
        concurrency,
        30_000,
    )
    .await;
    lab.wait_quiescent(Duration::from_secs(60)).await;
    lab.assert_clean().await;
    println!(
        "\n== {mode:?}, {concurrency} in flight: {orders} orders in {:.2?} = {:.0} orders/s ({} committed)",
        result.elapsed,
        orders as f64 / result.elapsed.as_secs_f64(),
        result.committed
    );
    for role in lab.roles() {
        let (histograms, counters) = lab.metrics(role).await;
        for (name, h) in &histograms {
            let (p50, p99) = harness::p50_p99_ms(h);
            println!(
                "{:>12} {name:<28} n={:<6} p50 {p50:>8.2} ms  p99 {p99:>8.2} ms",
                role.name(),
                h.len()
            );
        }
        let mut counters: Vec<_> = counters.into_iter().collect();
        counters.sort();
        println!("{:>12} counters {counters:?}", role.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run on demand, in release"]
async fn saga_latency_and_throughput() {
    for mode in modes() {
        measure(mode, 200, 1).await;
        measure(mode, 1000, 32).await;
    }
}

/// `SAGA_MEASURE_MODES=orchestrated` (or `choreographed`) narrows the run.
fn modes() -> Vec<Mode> {
    match std::env::var("SAGA_MEASURE_MODES").as_deref() {
        Ok("orchestrated") => vec![Mode::Orchestrated],
        Ok("choreographed") => vec![Mode::Choreographed],
        _ => vec![Mode::Orchestrated, Mode::Choreographed],
    }
}
