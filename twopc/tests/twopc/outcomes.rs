//! The three client outcomes of 2PC, and that nothing stays held after any of them.

use crate::support::{kind, small_data_set, start};
use common::api::pb::OutcomeKind;
use common::api::twopc_pb::{participant_client::ParticipantClient, GidRequest};
use std::time::Duration;
use twopc::branch::ServiceKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_commits_everywhere() {
    let lab = start("twopc_happy", small_data_set(1), |_| {}).await;
    let order = lab.order(3, &[(2, 4), (7, 1)]);
    let (before_balance, before_2) = (lab.balance(3).await, lab.available(2).await);
    let outcome = lab.place(&order, 2_000).await;
    assert_eq!(kind(&outcome), OutcomeKind::Committed, "{outcome:?}");
    assert!(outcome.decided_unix_us >= outcome.received_unix_us && outcome.received_unix_us > 0);
    assert_eq!(lab.balance(3).await, before_balance - order.amount().0);
    assert_eq!(lab.available(2).await, before_2 - 4);
    let report = lab.wait_quiescent_and_clean(Duration::from_secs(5)).await;
    assert_eq!(report.counts.orders_confirmed, 1);

    // Replaying the same order is idempotent: COMMITTED again, nothing applied twice.
    let again = lab.place(&order, 2_000).await;
    assert_eq!(kind(&again), OutcomeKind::Committed);
    assert_eq!(lab.balance(3).await, before_balance - order.amount().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_rejects_hold_nothing() {
    let lab = start("twopc_reject", small_data_set(2), |_| {}).await;
    // A customer who cannot pay a modest order.
    sqlx::query("UPDATE wallets SET balance_cents = 1 WHERE customer_id = 6")
        .execute(&lab.dbs.payments)
        .await
        .unwrap();
    let outcome = lab.place(&lab.order(6, &[(1, 1)]), 2_000).await;
    assert_eq!(kind(&outcome), OutcomeKind::Rejected);
    assert!(
        outcome.reason.contains("insufficient_funds"),
        "{}",
        outcome.reason
    );

    // Stock: more units than exist.
    let stock_3 = lab.available(3).await;
    let outcome = lab.place(&lab.order(7, &[(3, stock_3 + 1)]), 2_000).await;
    assert_eq!(kind(&outcome), OutcomeKind::Rejected);
    assert!(
        outcome.reason.contains("out_of_stock"),
        "{}",
        outcome.reason
    );

    // Nothing held, nothing changed (the checker also knows wallet 6 was set to 1 by hand).
    assert_eq!(
        lab.prepared().await,
        Vec::<String>::new(),
        "a REJECTED order left a branch prepared"
    );
    assert_eq!(lab.available(3).await, stock_3);
    let report = lab.check().await;
    assert!(
        report.leftovers.is_empty() && report.counts.orders_confirmed == 0,
        "{:#?}",
        report.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_participant_aborts_and_prepared_branches_roll_back() {
    let mut lab = start("twopc_unreachable", small_data_set(3), |c| {
        c.prepare_timeout = Duration::from_millis(300)
    })
    .await;
    lab.deployment
        .participant(ServiceKind::Inventory)
        .take()
        .unwrap()
        .kill();
    let order = lab.order(2, &[(4, 1)]);
    let before = lab.balance(2).await;
    let outcome = lab.place(&order, 2_000).await;
    assert_eq!(kind(&outcome), OutcomeKind::Aborted, "{outcome:?}");
    assert!(outcome.reason.contains("inventory"), "{}", outcome.reason);
    // Order and payment prepared, then were told to abort: nothing prepared, nothing charged.
    assert_eq!(lab.prepared().await, Vec::<String>::new());
    assert_eq!(lab.balance(2).await, before);
    lab.wait_quiescent_and_clean(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_late_decisions_change_nothing() {
    let lab = start("twopc_duplicates", small_data_set(4), |_| {}).await;
    let committed = lab.order(8, &[(5, 2)]);
    assert_eq!(
        kind(&lab.place(&committed, 2_000).await),
        OutcomeKind::Committed
    );
    let after_commit = (lab.balance(8).await, lab.available(5).await);

    for service in ServiceKind::ALL {
        let mut client = ParticipantClient::connect(lab.deployment.participant_url(service))
            .await
            .unwrap();
        let gid = committed.id.to_string();
        // A repeated Commit, a late Abort after the commit, and both for a gid never seen.
        client
            .commit(GidRequest { gid: gid.clone() })
            .await
            .expect("repeated Commit is fine");
        client
            .abort(GidRequest { gid: gid.clone() })
            .await
            .expect("late Abort is fine");
        client
            .commit(GidRequest {
                gid: "never-prepared".into(),
            })
            .await
            .expect("unknown Commit is fine");
        client
            .abort(GidRequest {
                gid: "never-prepared".into(),
            })
            .await
            .expect("unknown Abort is fine");
    }
    assert_eq!((lab.balance(8).await, lab.available(5).await), after_commit);
    let report = lab.wait_quiescent_and_clean(Duration::from_secs(5)).await;
    assert_eq!(report.counts.orders_confirmed, 1);
}
