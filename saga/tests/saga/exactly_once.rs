//! Exactly-once effects over at-least-once delivery: a relay that publishes every outbox row
//! twice, and a replay of every topic from offset 0 into fresh consumer groups, change nothing.

use super::deployment;
use super::harness::{Role, Start};
use super::workload;
use saga::Mode;
use std::time::Duration;

async fn duplicates_and_replays_change_nothing(mode: Mode) {
    let name = format!("exactly_once_{mode:?}").to_lowercase();
    let mut lab = deployment(&name, mode).await;
    for role in lab.roles() {
        lab.start(
            role,
            Start {
                publish_twice: true,
                ..Start::default()
            },
        )
        .await;
    }
    let orders = workload::mixed(&lab.data, 150, 5);
    workload::run(&lab, orders, 16, 30_000).await;
    lab.wait_quiescent(Duration::from_secs(30)).await;
    lab.assert_clean().await;
    let (_, counters) = lab.metrics(Role::Inventory).await;
    assert!(
        counters.get("messages.duplicate").copied().unwrap_or(0) > 0,
        "doubled publishes reached the handler: {counters:?}"
    );
    let before = lab.state().await;

    // Every process again, in new consumer groups: each reads its topics from offset 0.
    lab.stop_all();
    for role in lab.roles() {
        lab.start(
            role,
            Start {
                group_suffix: Some(".replay".into()),
                ..Start::default()
            },
        )
        .await;
    }
    for role in lab.roles() {
        lab.wait_caught_up(role, ".replay", Duration::from_secs(60))
            .await;
    }
    lab.wait_quiescent(Duration::from_secs(10)).await;
    assert_eq!(lab.state().await, before, "a full replay changed state");
    let (_, counters) = lab.metrics(Role::Payment).await;
    assert!(
        counters.get("messages.duplicate").copied().unwrap_or(0) > 0,
        "the replay reached the handlers: {counters:?}"
    );
    lab.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrated_duplicates_and_replays_change_nothing() {
    duplicates_and_replays_change_nothing(Mode::Orchestrated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreographed_duplicates_and_replays_change_nothing() {
    duplicates_and_replays_change_nothing(Mode::Choreographed).await;
}
