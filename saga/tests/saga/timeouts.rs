//! A step without a reply in time is re-sent, then compensated: with the payment service down,
//! the charge times out `max_attempts` times, the saga turns to compensation (refund first, since
//! an unanswered charge may have happened), waits there until payment returns, and ends ABORTED
//! with stock released and nothing charged.

use super::deployment;
use super::harness::{request, Role, Start};
use super::workload::{self, kind_of};
use common::domain::OutcomeKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saga::Mode;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_step_is_retried_then_compensated() {
    let mut lab = deployment("timeouts", Mode::Orchestrated).await;
    lab.step_timeout_ms = 1_000;
    lab.max_attempts = 2;
    lab.start_all().await;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut client = lab.client().await;
    // Warm-up with every service up, so consumer groups have joined before timing matters.
    let warm = workload::ordinary(&lab.data, &mut rng);
    client.place_order(request(&warm, 10_000)).await.unwrap();
    lab.wait_quiescent(Duration::from_secs(20)).await;
    lab.kill(Role::Payment);

    let order = workload::ordinary(&lab.data, &mut rng);
    // The client gives up first: the saga is still compensating (payment is down).
    let outcome = client
        .place_order(request(&order, 300))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&outcome), OutcomeKind::Undecided);
    assert!(outcome.accepted_unix_us > 0, "accepted before the deadline");

    let started = Instant::now();
    loop {
        let state: String = sqlx::query_scalar("SELECT state FROM sagas WHERE order_id = $1")
            .bind(order.id.0)
            .fetch_one(&lab.dbs.orchestrator)
            .await
            .unwrap();
        if state == "REFUNDING_PAYMENT" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "saga never gave up on the charge (state {state})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, counters) = lab.metrics(Role::Orchestrator).await;
    assert!(
        counters.get("saga.timeouts").copied().unwrap_or(0) >= 2,
        "{counters:?}"
    );

    lab.start(Role::Payment, Start::default()).await;
    lab.wait_quiescent(Duration::from_secs(30)).await;
    let report = lab.assert_clean().await;
    assert_eq!(
        (
            report.counts.orders_confirmed,
            report.counts.orders_cancelled
        ),
        (1, 1)
    );
    // The checker saw the cancelled order with its charge refunded (or never made) and its
    // stock released; the saga's outcome is a system abort, named by the step that timed out.
    let again = client
        .place_order(request(&order, 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&again), OutcomeKind::Aborted);
    assert_eq!(again.reason, "aborted:timeout:charge_payment");
}
