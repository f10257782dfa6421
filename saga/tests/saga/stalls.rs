//! Kafka clients that stop without failing — what librdkafka's did after a broker pause: a
//! consumer that stays in its group but stops fetching is found by the watchdog and replaced; a
//! relay whose producer stops acknowledging replaces its producer and publishes again. Either
//! way every saga still finishes and the checker finds nothing.

use super::deployment;
use super::harness::{Role, Start};
use super::workload;
use saga::telemetry::CONSUMER_REPLACED;
use saga::Mode;
use std::time::Duration;

/// Starts every process, `victim` armed with `failpoint`; places 120 orders and waits for every
/// saga to finish; returns the victim's counters.
async fn stall_and_recover(
    name: &str,
    victim: Role,
    failpoint: &str,
) -> std::collections::HashMap<String, u64> {
    let mut lab = deployment(name, Mode::Orchestrated).await;
    for role in lab.roles() {
        let failpoints = (role == victim).then(|| failpoint.to_string());
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
    let (_, counters) = lab.metrics(victim).await;
    counters.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_producer_stops_acknowledging_replaces_it_and_every_saga_finishes() {
    let counters = stall_and_recover(
        "wedged_producer",
        Role::Orchestrator,
        "relay-producer-wedges=fire-after(40)",
    )
    .await;
    assert!(
        counters
            .get("relay.producer_replaced")
            .copied()
            .unwrap_or(0)
            >= 1,
        "the orchestrator's relay producer wedged at its fail point and was replaced: {counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_fetching_is_replaced_and_every_saga_finishes() {
    let counters = stall_and_recover(
        "stalled_consumer",
        Role::Payment,
        "consumer-stops-fetching=fire-after(30)",
    )
    .await;
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
