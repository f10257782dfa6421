//! A step without a reply in time is re-sent, then compensated: with the payment service down,
//! the charge times out `max_attempts` times, the saga turns to compensation (refund first, since
//! an unanswered charge may have happened), waits there until payment returns, and ends ABORTED
//! with stock released and nothing charged. Choreography gets the same wait as one saga deadline,
//! after which the payment service decides at the pivot: forward if it charged, void if not.

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

/// Choreography, both sides of the pivot. Payment down: the order times out, but payment sees
/// the charge before the cancel request when it returns, so the charge stands and the saga
/// confirms. Inventory down: payment voids before any charge, the returning inventory reserves
/// and then releases, the late charge is refused, and the order ends ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_choreographed_saga_is_decided_at_the_pivot() {
    let mut lab = deployment("choreo_timeouts", Mode::Choreographed).await;
    lab.step_timeout_ms = 2_000;
    lab.max_attempts = 2; // a saga deadline of 2 + 4 = 6 s, then a request every 6 s
    lab.start_all().await;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut client = lab.client().await;
    let warm = workload::ordinary(&lab.data, &mut rng);
    client.place_order(request(&warm, 10_000)).await.unwrap();
    lab.wait_quiescent(Duration::from_secs(20)).await;

    let (down, charged) = (Role::Payment, workload::ordinary(&lab.data, &mut rng));
    lab.kill(down);
    let outcome = client
        .place_order(request(&charged, 300))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&outcome), OutcomeKind::Undecided);
    wait_for_cancel_requests(&lab, &charged).await;
    lab.start(down, Start::default()).await;
    lab.wait_quiescent(Duration::from_secs(30)).await;
    let again = client
        .place_order(request(&charged, 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&again), OutcomeKind::Committed, "{again:?}");

    let (down, voided) = (Role::Inventory, workload::ordinary(&lab.data, &mut rng));
    lab.kill(down);
    let outcome = client
        .place_order(request(&voided, 300))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&outcome), OutcomeKind::Undecided);
    wait_for_cancel_requests(&lab, &voided).await;
    let started = Instant::now();
    while !is_voided(&lab, &voided).await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "payment never voided the late order"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The release is inventory's: the order stays open until it returns.
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(voided.id.0)
        .fetch_one(&lab.dbs.orders)
        .await
        .unwrap();
    assert_eq!(status, "PENDING");
    lab.start(down, Start::default()).await;
    lab.wait_quiescent(Duration::from_secs(30)).await;

    let report = lab.assert_clean().await;
    assert_eq!(
        (
            report.counts.orders_confirmed,
            report.counts.orders_cancelled
        ),
        (2, 1)
    );
    let again = client
        .place_order(request(&voided, 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&again), OutcomeKind::Aborted);
    assert_eq!(again.reason, "aborted:timeout:saga");
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = $1")
        .bind(voided.id.0)
        .fetch_one(&lab.dbs.payments)
        .await
        .unwrap();
    assert_eq!(charges, 0, "a voided order was charged");
    let (_, counters) = lab.metrics(Role::Order).await;
    assert!(
        counters.get("saga.timeouts").copied().unwrap_or(0) >= 2,
        "{counters:?}"
    );
    let (_, counters) = lab.metrics(Role::Payment).await;
    assert_eq!(
        counters.get("payment.refused_after_void").copied(),
        Some(1),
        "the returning inventory's reservation reached payment after the void: {counters:?}"
    );
}

/// Waits until the order service asked for the order's cancel.
async fn wait_for_cancel_requests(lab: &super::harness::Deployment, order: &common::domain::Order) {
    let started = Instant::now();
    loop {
        let attempts: Option<i32> =
            sqlx::query_scalar("SELECT attempts FROM cancel_requests WHERE order_id = $1")
                .bind(order.id.0)
                .fetch_optional(&lab.dbs.orders)
                .await
                .unwrap();
        if attempts.is_some() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the late order was never asked to cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn is_voided(lab: &super::harness::Deployment, order: &common::domain::Order) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM voided_payments WHERE order_id = $1")
        .bind(order.id.0)
        .fetch_one(&lab.dbs.payments)
        .await
        .unwrap()
        == 1
}
