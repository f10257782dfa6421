//! The open-loop generator against an in-process no-op server: it keeps the requested rate, it
//! charges a stalled server for every order it kept waiting (coordinated omission corrected),
//! and past a server's capacity it counts what completed, not what was offered.

use common::datagen::{DataSet, DataSetSpec};
use common::domain::OutcomeKind;
use loadgen::load::connections::Connections;
use loadgen::load::open::{run, Arrivals, OpenLoop};
use loadgen::load::workload::WorkloadSpec;
use loadgen::run::noop_server::{serve, NoopOrderApi};
use std::time::{Duration, Instant};

fn data() -> DataSet {
    DataSet::generate(&DataSetSpec {
        customers: 100,
        skus: 20,
        ..DataSetSpec::default()
    })
    .unwrap()
}

fn load(rate: f64, secs: u64, arrivals: Arrivals) -> OpenLoop {
    OpenLoop {
        rate,
        duration: Duration::from_secs(secs),
        arrivals,
        max_in_flight: 10_000,
        deadline: Duration::from_secs(5),
        seed: 3,
        stream_base: 0,
        precise: false,
        surges: Vec::new(),
    }
}

async fn connections(addr: std::net::SocketAddr) -> Connections {
    Connections::open(&format!("http://{addr}"), 2)
        .await
        .unwrap()
}

/// The generator yields the CPU between close start times rather than sleep past them: two
/// generators at once on two cores would measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_and_poisson_arrivals_hit_the_rate_within_two_percent() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, _stop) = serve(NoopOrderApi::default()).await.unwrap();
    for arrivals in [Arrivals::Constant, Arrivals::Poisson] {
        let result = run(
            &connections(addr).await,
            &data(),
            &WorkloadSpec::default(),
            &load(1_000.0, 10, arrivals),
        )
        .await;
        let rate = result.achieved_rate();
        println!(
            "{arrivals:?}: {} started in {:?}: {rate:.1}/s; lag p99 {} µs",
            result.started,
            result.start_span,
            result.schedule_lag.value_at_quantile(0.99)
        );
        assert!(
            (rate - 1_000.0).abs() / 1_000.0 < 0.02,
            "{arrivals:?} achieved {rate:.1}/s"
        );
        assert_eq!(
            result.count(OutcomeKind::Committed),
            result.started,
            "every started order answered"
        );
        assert_eq!(result.dropped_at_cap, 0);
        let per_second: u64 = result.timeline.iter().map(|b| b.scheduled).sum();
        assert_eq!(per_second, result.started);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_is_charged_to_every_order_scheduled_during_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let api = NoopOrderApi::default();
    let (addr, _stop) = serve(api.clone()).await.unwrap();
    let stall = api.stall.clone();
    let begin = Instant::now();
    // The server stalls from 1 s to 2 s into a 3 s run at 200 orders/s.
    tokio::spawn(async move {
        tokio::time::sleep_until((begin + Duration::from_secs(1)).into()).await;
        stall.stall_until(Instant::now() + Duration::from_secs(1));
    });
    let result = run(
        &connections(addr).await,
        &data(),
        &WorkloadSpec::default(),
        &load(200.0, 3, Arrivals::Constant),
    )
    .await;
    let latency = &result.latency[&OutcomeKind::Committed];
    println!(
        "p50 {} µs, p90 {} µs, max {} µs, over 500 ms: {}",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.9),
        latency.max(),
        latency.count_between(500_000, 2_000_000)
    );
    // Orders scheduled during the stall waited from their scheduled start: up to ~1 s each, and
    // about half of the ~200 scheduled in it over 500 ms. A closed loop would record one slow
    // answer per client instead.
    assert!(latency.max() >= 900_000, "max {} µs", latency.max());
    let slow = latency.count_between(500_000, 60_000_000);
    assert!(
        slow >= 80,
        "orders scheduled during the stall were not charged for it: {slow} over 500 ms"
    );
}

/// A server that answers one order at a time, 20 ms each, completes at most 50 a second; offered
/// 100/s for 4 s, the window's throughput is bounded by that capacity (a slower machine only
/// lowers it), every commit is counted once, inside the window or after it, and the backlog
/// is still answered after the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_knee_throughput_is_what_completed_not_what_was_offered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let api = NoopOrderApi::saturating(Duration::from_millis(20));
    let (addr, _stop) = serve(api).await.unwrap();
    let result = run(
        &connections(addr).await,
        &data(),
        &WorkloadSpec::default(),
        &load(100.0, 4, Arrivals::Constant),
    )
    .await;
    assert!((399..=401).contains(&result.started), "{}", result.started);
    let in_window: u64 = result
        .timeline
        .iter()
        .map(|b| b.committed_by_completion)
        .sum();
    let committed = result.count(OutcomeKind::Committed);
    assert_eq!(committed, result.started, "every order answered in the end");
    assert_eq!(in_window + result.committed_after_window, committed);
    assert!(
        in_window <= 4 * 50 + 1,
        "{in_window} commits completed in 4 s by a server that does 50/s at most"
    );
    assert!(result.committed_after_window >= result.started - 4 * 50 - 1);
    let offered: u64 = result.timeline.iter().map(|b| b.scheduled).sum();
    assert_eq!(
        offered, result.started,
        "the offered load is the schedule, whatever completed"
    );
}
