//! The load generator's own ceiling: open loop against a no-op `OrderApi` on loopback, the
//! generator on one core (a current-thread runtime pinned to CPU 0), the server on the other
//! (pinned to CPU 1). Reports, per offered rate, the rate achieved, the schedule lag (how late
//! orders started) and errors. The lab's target: >= 50,000 orders/s with schedule lag p99 < 100 µs.
//!
//! cargo bench -p txlab-benches --bench generator_ceiling
//! Knobs: CEILING_RATES=10000,50000 (orders/s), CEILING_CONNECTIONS=4, CEILING_SECONDS=5.

use common::datagen::{DataSet, DataSetSpec};
use loadgen::load::connections::Connections;
use loadgen::load::open::{run, Arrivals, OpenLoop};
use loadgen::load::workload::WorkloadSpec;
use loadgen::run::noop_server::{serve, NoopOrderApi};
use std::time::Duration;

/// The same allocator as the `loadgen` binary, so this measures the generator as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Pins the calling thread to one CPU, so "one core" is literal; says so when it cannot.
fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only read
    // and write that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPU time (user + system) this thread has used.
fn thread_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The server gets its own thread, runtime and core, so the generator's core is its alone.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("noop-server".into())
        .spawn(move || {
            let pinned = cpus > 1 && pin_to_cpu(1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (addr, _stop) = serve(NoopOrderApi::default()).await.unwrap();
                addr_tx.send((addr, pinned)).unwrap();
                std::future::pending::<()>().await;
            });
        })
        .expect("a thread for the server");
    let (addr, server_pinned) = addr_rx.recv().unwrap();
    let generator_pinned = pin_to_cpu(0);
    let generator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = DataSet::generate(&DataSetSpec::default()).unwrap();
    let rates: Vec<f64> = std::env::var("CEILING_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000.0, 25_000.0, 50_000.0, 60_000.0]);
    let connections: usize = env_or("CEILING_CONNECTIONS", 4);
    let seconds: u64 = env_or("CEILING_SECONDS", 5);
    // Precise starts spin (yield) through the last millisecond; without it the generator
    // sleeps, and its CPU per order shows what the work itself costs.
    let precise: bool = env_or("CEILING_PRECISE", true);
    println!(
        "generator on CPU 0 (pinned: {generator_pinned}), no-op server on CPU 1 (pinned: {server_pinned}), \
         {connections} HTTP/2 connections, {seconds} s per rate, precise starts: {precise}, {cpus} CPUs"
    );
    println!(
        "{:>10} {:>10} {:>11} {:>11} {:>12} {:>14} {:>8} {:>8} {:>13}",
        "offered/s",
        "achieved/s",
        "lag p50 µs",
        "lag p99 µs",
        "lag p99.9 µs",
        "latency p99 µs",
        "errors",
        "dropped",
        "CPU µs/order"
    );
    for (i, rate) in rates.into_iter().enumerate() {
        let cpu_before = thread_cpu_time();
        let result = generator.block_on(async {
            let connections = Connections::open(&format!("http://{addr}"), connections)
                .await
                .unwrap();
            let load = OpenLoop {
                rate,
                duration: Duration::from_secs(seconds),
                arrivals: Arrivals::Constant,
                max_in_flight: 100_000,
                deadline: Duration::from_secs(5),
                seed: 1,
                stream_base: i as u64 * 1_000,
                precise,
                surges: Vec::new(),
            };
            run(&connections, &data, &WorkloadSpec::default(), &load).await
        });
        let latency_p99 = result
            .latency
            .values()
            .map(|h| h.value_at_quantile(0.99))
            .max()
            .unwrap_or(0);
        println!(
            "{:>10.0} {:>10.0} {:>11} {:>11} {:>12} {:>14} {:>8} {:>8} {:>13.1}",
            rate,
            result.achieved_rate(),
            result.schedule_lag.value_at_quantile(0.5),
            result.schedule_lag.value_at_quantile(0.99),
            result.schedule_lag.value_at_quantile(0.999),
            latency_p99,
            result.errors.values().sum::<u64>(),
            result.dropped_at_cap,
            (thread_cpu_time() - cpu_before).as_secs_f64() * 1e6 / result.started.max(1) as f64
        );
        if !result.errors.is_empty() {
            println!("{:>10} errors by gRPC code: {:?}", "", result.errors);
        }
    }
}
