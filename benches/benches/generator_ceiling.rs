//! The load generator's own ceiling: open loop against a no-op `OrderApi` on loopback, the
//! generator on one core (a current-thread runtime), the server on another thread. Reports, per
//! offered rate, the rate achieved, the schedule lag (how late orders started) and errors. The
//! lab's target: >= 50,000 orders/s with schedule lag p99 < 100 µs.
//!
//! cargo bench -p txlab-benches --bench generator_ceiling

use common::datagen::{DataSet, DataSetSpec};
use loadgen::noop_server::{serve, NoopOrderApi};
use loadgen::open_loop::{run, Arrivals, OpenLoop};
use loadgen::workload::WorkloadSpec;
use std::time::Duration;

fn main() {
    // The server gets its own thread and runtime, so the generator's core is its alone.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (addr, _stop) = serve(NoopOrderApi::default()).await.unwrap();
            addr_tx.send(addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let addr = addr_rx.recv().unwrap();
    let generator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = DataSet::generate(&DataSetSpec::default()).unwrap();
    let rates: Vec<f64> = std::env::var("CEILING_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000.0, 25_000.0, 50_000.0, 75_000.0]);
    println!(
        "{:>10} {:>10} {:>12} {:>12} {:>8} {:>8}",
        "offered/s", "achieved/s", "lag p50 µs", "lag p99 µs", "errors", "dropped"
    );
    for (i, rate) in rates.into_iter().enumerate() {
        let result = generator.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .connect()
                .await
                .unwrap();
            let load = OpenLoop {
                rate,
                duration: Duration::from_secs(3),
                arrivals: Arrivals::Constant,
                max_in_flight: 100_000,
                deadline: Duration::from_secs(5),
                seed: 1,
                stream_base: i as u64 * 1_000,
                precise: true,
            };
            run(channel, &data, &WorkloadSpec::default(), &load).await
        });
        println!(
            "{:>10.0} {:>10.0} {:>12} {:>12} {:>8} {:>8}",
            rate,
            result.achieved_rate(),
            result.schedule_lag.value_at_quantile(0.5),
            result.schedule_lag.value_at_quantile(0.99),
            result.errors.values().sum::<u64>(),
            result.dropped_at_cap
        );
        if !result.errors.is_empty() {
            println!("{:>10} errors by gRPC code: {:?}", "", result.errors);
        }
    }
}
