//! The happy path, a payment failure and a stock failure in both modes, then 1,000 mixed orders
//! with a failing share and the invariant checker.

use super::deployment;
use super::harness::{p50_p99_ms, request, Role};
use super::workload::{self, kind_of, Intent};
use common::domain::{OutcomeKind, ReservationStatus};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saga::telemetry;
use saga::Mode;
use std::time::Duration;

async fn happy_and_business_failures(mode: Mode) {
    let name = format!("flows_{mode:?}").to_lowercase();
    let mut lab = deployment(&name, mode).await;
    lab.start_all().await;
    let mut client = lab.client().await;
    let mut rng = ChaCha8Rng::seed_from_u64(1);

    let order = workload::ordinary(&lab.data, &mut rng);
    let outcome = client
        .place_order(request(&order, 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&outcome), OutcomeKind::Committed, "{outcome:?}");
    assert!(
        outcome.received_unix_us <= outcome.accepted_unix_us
            && outcome.accepted_unix_us <= outcome.decided_unix_us
    );
    assert_eq!(outcome.amount_cents, order.amount().0);

    let poor = workload::fails_on_funds(&lab.data, &mut rng);
    let outcome = client
        .place_order(request(&poor, 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&outcome), OutcomeKind::Rejected, "{outcome:?}");
    assert_eq!(outcome.reason, "rejected:insufficient_funds");

    let greedy = workload::fails_on_stock(&lab.data, &mut rng);
    let outcome = client
        .place_order(request(&greedy, 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&outcome), OutcomeKind::Rejected, "{outcome:?}");
    assert_eq!(outcome.reason, "rejected:out_of_stock");

    // A repeated request is answered from state, not run again.
    let again = client
        .place_order(request(&order, 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kind_of(&again), OutcomeKind::Committed);

    lab.wait_quiescent(Duration::from_secs(20)).await;

    // Every process reports the Kafka settings its clients really use, librdkafka's defaults
    // included, and they survive a reset of the figures.
    for role in [Role::Order, Role::Payment, Role::Inventory] {
        let settings = lab.settings(role).await;
        let again = lab.settings(role).await;
        assert_eq!(settings, again, "{role:?}: settings outlive a reset");
        let get = |k: &str| settings.get(k).map(String::as_str);
        assert_eq!(
            get("kafka.producer.enable.idempotence"),
            Some("true"),
            "{role:?}: {settings:?}"
        );
        assert_eq!(
            get("kafka.producer.message.timeout.ms"),
            Some("0"),
            "{role:?}"
        );
        assert_eq!(
            get("kafka.consumer.isolation.level"),
            Some("read_committed"),
            "{role:?}"
        );
        assert_eq!(
            get("kafka.consumer.group.protocol"),
            Some("consumer"),
            "{role:?}"
        );
        // Never set by the lab: librdkafka's own default, as the client reports it.
        assert!(
            get("kafka.producer.batch.num.messages").is_some_and(|v| v.parse::<u32>().is_ok()),
            "{role:?}: {settings:?}"
        );
    }
    // Payment failure: the reservation was released (stock restored) and the order cancelled.
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
            .bind(poor.id.0)
            .fetch_all(&lab.dbs.inventory)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![ReservationStatus::Released.as_str().to_string()]
    );
    let order_status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(poor.id.0)
        .fetch_one(&lab.dbs.orders)
        .await
        .unwrap();
    assert_eq!(order_status, "CANCELLED");
    // Stock failure: nothing charged, nothing reserved.
    let charged: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = ANY($1)")
        .bind(vec![greedy.id.0, poor.id.0])
        .fetch_one(&lab.dbs.payments)
        .await
        .unwrap();
    assert_eq!(charged, 0, "neither failed order may have been charged");
    let report = lab.assert_clean().await;
    assert_eq!(
        (
            report.counts.orders_confirmed,
            report.counts.orders_cancelled
        ),
        (1, 2)
    );
    let sku = poor.lines()[0].sku;
    let available: i32 = sqlx::query_scalar("SELECT available FROM stock WHERE sku = $1")
        .bind(sku.0)
        .fetch_one(&lab.dbs.inventory)
        .await
        .unwrap();
    let taken: i32 = order
        .lines()
        .iter()
        .filter(|l| l.sku == sku)
        .map(|l| l.qty)
        .sum();
    assert_eq!(
        available,
        lab.data.stock[(sku.0 - 1) as usize].available - taken,
        "released units are back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrated_happy_path_and_business_failures() {
    happy_and_business_failures(Mode::Orchestrated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreographed_happy_path_and_business_failures() {
    happy_and_business_failures(Mode::Choreographed).await;
}

/// 1,000 orders, 20 % made to fail, 24 in flight: every intent gets its outcome and the checker
/// finds nothing. Prints the latency figures the closing note reports.
async fn thousand_mixed_orders(mode: Mode) {
    let name = format!("mixed_{mode:?}").to_lowercase();
    let mut lab = deployment(&name, mode).await;
    lab.start_all().await;
    let orders = workload::mixed(&lab.data, 1000, 99);
    let expected_fail = orders.iter().filter(|(i, _)| *i != Intent::Commit).count();
    let ids: Vec<_> = orders.iter().map(|(_, o)| o.id).collect();
    let result = workload::run(&lab, orders, 24, 30_000).await;
    lab.wait_quiescent(Duration::from_secs(30)).await;
    let report = lab.assert_clean().await;
    assert_eq!(
        result.count(Intent::FailFunds, Some(OutcomeKind::Rejected))
            + result.count(Intent::FailStock, Some(OutcomeKind::Rejected)),
        expected_fail,
        "{:?}",
        result.outcomes
    );
    assert_eq!(
        result.committed,
        1000 - expected_fail,
        "{:?}",
        result.outcomes
    );
    assert_eq!(report.counts.orders_confirmed as usize, result.committed);

    let (front, _) = lab.metrics(lab.front()).await;
    let (e2e, accept) = (
        p50_p99_ms(&front[telemetry::END_TO_END]),
        p50_p99_ms(&front[telemetry::ACCEPT]),
    );
    let (inventory, _) = lab.metrics(Role::Inventory).await;
    let hop = p50_p99_ms(&inventory[telemetry::KAFKA_HOP]);
    let relay = p50_p99_ms(&inventory[telemetry::RELAY_DELAY]);
    // Semantic locks, read from the rows the same way for both modes: every committed order
    // held a reservation and a charge, both now ended.
    let locks = common::semantic_locks::of_orders(&lab.dbs, &ids)
        .await
        .unwrap();
    assert!(locks.reservation.len() >= result.committed as u64);
    assert!(locks.charge.len() >= result.committed as u64);
    let lock_res = p50_p99_ms(&locks.reservation);
    let lock_charge = p50_p99_ms(&locks.charge);
    println!(
        "{mode:?}: 1000 orders at 24 in flight in {:?} ({:.0} orders/s); end-to-end p50/p99 {e2e:?} ms; \
         accept {accept:?} ms; kafka hop {hop:?} ms; relay delay {relay:?} ms; \
         semantic lock reservation {lock_res:?} ms, charge {lock_charge:?} ms",
        result.elapsed,
        1000.0 / result.elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrated_thousand_mixed_orders_stay_consistent() {
    thousand_mixed_orders(Mode::Orchestrated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreographed_thousand_mixed_orders_stay_consistent() {
    thousand_mixed_orders(Mode::Choreographed).await;
}
