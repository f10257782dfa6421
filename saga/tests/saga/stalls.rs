//! A consumer that stays in its group but stops fetching — what librdkafka did after a broker
//! pause — is found by the watchdog and replaced by a new client; every saga still finishes and
//! the checker finds nothing.

use super::deployment;
use super::harness::{Role, Start};
use super::workload;
use saga::telemetry::CONSUMER_REPLACED;
use saga::Mode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_fetching_is_replaced_and_every_saga_finishes() {
    let mut lab = deployment("stalled_consumer", Mode::Orchestrated).await;
    for role in lab.roles() {
        let failpoints =
            (role == Role::Payment).then(|| "consumer-stops-fetching=fire-after(30)".to_string());
        lab.start(
            role,
            Start {
                failpoints,
                ..Start::default()
            },
        )
        .await;
    }
    let orders = workload::mixed(&lab.data, 120, 13);
    workload::run(&lab, orders, 8, 3_000).await;
    lab.wait_quiescent(Duration::from_secs(90)).await;
    lab.assert_clean().await;
    let (_, counters) = lab.metrics(Role::Payment).await;
    assert!(
        counters.get(CONSUMER_REPLACED).copied().unwrap_or(0) >= 1,
        "the payment consumer stopped fetching at its fail point and was replaced: {counters:?}"
    );
    assert!(
        counters
            .get("kafka.consumer_assigned")
            .copied()
            .unwrap_or(0)
            >= 2,
        "the replacement joined the group and held partitions: {counters:?}"
    );
}
