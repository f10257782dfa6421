//! Crashes at the worst moments, as real SIGKILLs at fail points: the orchestrator mid-saga, a
//! service between its local commit and its offset commit, and a relay between publish and
//! mark-sent. After a restart every saga finishes and the checker finds nothing.

use super::deployment;
use super::harness::{Deployment, Role, Start};
use super::workload;
use saga::Mode;
use std::time::Duration;

/// Starts every process, `victim` armed with `failpoints`; places orders until the victim dies,
/// restarts it unarmed, and waits for every saga to finish.
async fn crash_and_recover(lab: &mut Deployment, victim: Role, failpoints: &str) {
    for role in lab.roles() {
        let start = if role == victim {
            Start {
                failpoints: Some(failpoints.into()),
                ..Start::default()
            }
        } else {
            Start::default()
        };
        lab.start(role, start).await;
    }
    let orders = workload::mixed(&lab.data, 120, 11);
    // Clients of a crashed front see transport errors or UNDECIDED; the sagas carry on.
    workload::run(lab, orders, 16, 3_000).await;
    assert!(
        lab.process(victim).wait_exit(Duration::from_secs(30)).await,
        "{victim:?} never reached its fail point"
    );
    lab.kill(victim);
    lab.start(victim, Start::default()).await;
    lab.wait_quiescent(Duration::from_secs(60)).await;
    lab.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_killed_mid_saga_resumes_every_saga() {
    let mut lab = deployment("crash_orchestrator", Mode::Orchestrated).await;
    lab.step_timeout_ms = 2_000;
    crash_and_recover(
        &mut lab,
        Role::Orchestrator,
        "orchestrator-after-transition=crash-after(150)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_killed_between_commit_and_offset_commit_applies_once() {
    let mut lab = deployment("crash_payment", Mode::Orchestrated).await;
    crash_and_recover(
        &mut lab,
        Role::Payment,
        "consumer-before-offset-store=crash-after(40)",
    )
    .await;
    let (_, counters) = lab.metrics(Role::Payment).await;
    assert!(
        counters.get("messages.duplicate").copied().unwrap_or(0) >= 1,
        "the redelivered command was deduped: {counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreographed_service_killed_between_commit_and_offset_commit_applies_once() {
    let mut lab = deployment("crash_inventory_choreo", Mode::Choreographed).await;
    crash_and_recover(
        &mut lab,
        Role::Inventory,
        "consumer-before-offset-store=crash-after(60)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_between_publish_and_mark_loses_nothing() {
    let mut lab = deployment("crash_relay", Mode::Orchestrated).await;
    crash_and_recover(
        &mut lab,
        Role::Inventory,
        "relay-after-publish=crash-after(5)",
    )
    .await;
    let (_, counters) = lab.metrics(Role::Orchestrator).await;
    assert!(
        counters.get("messages.duplicate").copied().unwrap_or(0) >= 1,
        "re-published replies were deduped: {counters:?}"
    );
}
