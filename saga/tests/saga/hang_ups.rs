//! Clients that hang up mid-request (DESIGN §5's faults seen from the client): the front's
//! accepting transaction runs to its end in its own task, so no pooled connection is handed back
//! inside an open transaction (transact-rs/sqlx#4393) and nothing is left half-done.

use super::deployment;
use super::harness::request;
use super::workload;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use saga::Mode;
use std::time::Duration;
use tokio::task::JoinSet;

/// Orders placed, and the longest a client waits before it hangs up (µs): the front begins its
/// transaction within about a millisecond of the request.
const ORDERS: usize = 1_500;
const CUT_WITHIN_US: u64 = 1_500;

async fn hang_ups_leave_no_open_transaction(mode: Mode) {
    let name = format!("hang_ups_{mode:?}").to_lowercase();
    let mut lab = deployment(&name, mode).await;
    lab.start_all().await;
    let client = lab.client().await;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // 20 at a time, each abandoned within 1.5 ms: most while the front is inside its
    // transaction (BEGIN, the insert, the outbox row, COMMIT).
    let mut requests = JoinSet::new();
    let mut abandoned = 0;
    for _ in 0..ORDERS {
        if requests.len() >= 20 {
            abandoned += requests.join_next().await.unwrap().unwrap() as usize;
        }
        let order = workload::ordinary(&lab.data, &mut rng);
        let hang_up_after = Duration::from_micros(rng.gen_range(0..CUT_WITHIN_US));
        let mut client = client.clone();
        requests.spawn(async move {
            tokio::time::timeout(hang_up_after, client.place_order(request(&order, 20_000)))
                .await
                .is_err()
        });
    }
    while let Some(done) = requests.join_next().await {
        abandoned += done.unwrap() as usize;
    }
    assert!(
        abandoned > ORDERS / 2,
        "only {abandoned} of {ORDERS} requests were cut short"
    );

    // Every saga the fronts accepted finishes, and the databases agree with each other.
    lab.wait_quiescent(Duration::from_secs(120)).await;
    lab.assert_clean().await;
    for pool in [
        &lab.dbs.orders,
        &lab.dbs.payments,
        &lab.dbs.inventory,
        &lab.dbs.orchestrator,
    ] {
        let stuck: Vec<(i32, String)> = sqlx::query_as(
            "SELECT pid, coalesce(query, '') FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(
            stuck.is_empty(),
            "{name}: sessions left inside a transaction: {stuck:?}"
        );
    }
    // A pooled connection left inside a transaction makes the next BEGIN on it warn.
    let front_log = std::fs::read_to_string(lab.log_path(lab.front())).unwrap();
    assert!(
        !front_log.contains("already a transaction in progress"),
        "{name}: a front reused a connection inside an open transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrated_hang_ups_leave_no_open_transaction() {
    hang_ups_leave_no_open_transaction(Mode::Orchestrated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreographed_hang_ups_leave_no_open_transaction() {
    hang_ups_leave_no_open_transaction(Mode::Choreographed).await;
}
