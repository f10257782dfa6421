//! Crash recovery with real SIGKILLs: the coordinator after its decision is logged and before it
//! decides, and a participant between its YES vote and the decision.

use crate::support::{kind, small_data_set, start};
use common::api::pb::OutcomeKind;
use common::failpoint::ENV_VAR;
use std::time::Duration;
use twopc::branch::ServiceKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_after_logging_commit_recovers_and_commits_everywhere() {
    // SIGKILL right after forcing the COMMIT record, before any Commit is sent: all three in doubt.
    coordinator_crash_after_decision(
        "twopc_crash_after_log",
        "coordinator-after-decision-logged",
        3,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_after_first_commit_recovers_and_commits_the_rest() {
    // SIGKILL once one participant acknowledged Commit; payment and inventory are slow to apply
    // theirs, so they are still in doubt when the coordinator dies.
    coordinator_crash_after_decision(
        "twopc_crash_after_first_commit",
        "coordinator-after-first-commit",
        2,
        true,
    )
    .await;
}

/// Arms `failpoint=crash` in the coordinator, places one order, checks that `in_doubt` branches
/// stay prepared while it is down, restarts it and checks that recovery commits everywhere.
async fn coordinator_crash_after_decision(
    test: &str,
    failpoint: &str,
    in_doubt: usize,
    slow_commits: bool,
) {
    let mut lab = start(test, small_data_set(11), |c| {
        c.ask_after = Duration::from_secs(60)
    })
    .await;
    if slow_commits {
        for kind in [ServiceKind::Payment, ServiceKind::Inventory] {
            lab.deployment.participant(kind).take().unwrap().stop();
            *lab.deployment.participant(kind) = Some(
                lab.deployment
                    .start_participant(kind, &[(ENV_VAR, "participant-before-commit=sleep(1500)")])
                    .await
                    .unwrap(),
            );
        }
    }
    lab.deployment.coordinator.take().unwrap().stop();
    let armed = format!("{failpoint}=crash");
    lab.deployment.coordinator = Some(
        lab.deployment
            .start_coordinator(&[(ENV_VAR, armed.as_str())])
            .await
            .unwrap(),
    );
    let order = lab.order(9, &[(3, 2), (8, 1)]);
    let placing = {
        let mut client = lab.client().await;
        let req = common::api::pb::PlaceOrderRequest::from(&order);
        tokio::spawn(async move { client.place_order(req).await })
    };
    let mut crashed = lab.deployment.coordinator.take().unwrap();
    assert!(
        crashed.wait_exit(Duration::from_secs(10)).await,
        "the coordinator did not crash at {failpoint}"
    );
    assert!(
        placing.await.unwrap().is_err(),
        "the client saw the connection drop"
    );
    // The branches not yet committed stay prepared, holding locks; the log says COMMIT.
    assert_eq!(
        lab.prepared().await.len(),
        in_doubt,
        "branches in doubt after {failpoint}"
    );

    lab.deployment.coordinator = Some(lab.deployment.start_coordinator(&[]).await.unwrap());
    let report = lab.wait_quiescent_and_clean(Duration::from_secs(15)).await;
    assert_eq!(
        report.counts.orders_confirmed, 1,
        "recovery committed the logged decision"
    );
    // The client's retry learns the outcome from the log.
    assert_eq!(
        kind(&lab.place(&order, 2_000).await),
        OutcomeKind::Committed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_before_deciding_leaves_participants_to_abort_after_asking() {
    let mut lab = start("twopc_crash_before_decision", small_data_set(12), |c| {
        c.prepare_timeout = Duration::from_secs(5);
        c.ask_after = Duration::from_millis(200);
    })
    .await;
    // Inventory stalls after preparing, so the coordinator is still collecting votes when killed.
    lab.deployment
        .participant(ServiceKind::Inventory)
        .take()
        .unwrap()
        .stop();
    *lab.deployment.participant(ServiceKind::Inventory) = Some(
        lab.deployment
            .start_participant(
                ServiceKind::Inventory,
                &[(ENV_VAR, "participant-after-prepare-before-vote=sleep(3000)")],
            )
            .await
            .unwrap(),
    );
    let order = lab.order(10, &[(6, 1)]);
    let before = lab.balance(10).await;
    let placing = {
        let mut client = lab.client().await;
        let req = common::api::pb::PlaceOrderRequest::from(&order);
        tokio::spawn(async move { client.place_order(req).await })
    };
    // Wait until all three branches are prepared, then kill the undecided coordinator.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lab.prepared().await.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "branches never prepared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.deployment.coordinator.take().unwrap().kill();
    let _ = placing.await;
    // Participants ask an absent coordinator and keep asking, holding their locks.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        lab.prepared().await.len(),
        3,
        "blocked while the coordinator is down"
    );

    lab.deployment.coordinator = Some(lab.deployment.start_coordinator(&[]).await.unwrap());
    let report = lab.wait_quiescent_and_clean(Duration::from_secs(15)).await;
    assert_eq!(
        report.counts.orders_confirmed, 0,
        "no COMMIT record: presumed abort"
    );
    assert_eq!(lab.balance(10).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_killed_while_prepared_resolves_its_branch_after_restart() {
    let mut lab = start("twopc_participant_crash", small_data_set(13), |c| {
        c.ask_after = Duration::from_millis(200)
    })
    .await;
    // The coordinator holds its Commits for 2 s after logging: the payment participant is killed
    // in that window, with its branch prepared and its vote YES.
    lab.deployment.coordinator.take().unwrap().stop();
    lab.deployment.coordinator = Some(
        lab.deployment
            .start_coordinator(&[(ENV_VAR, "coordinator-after-decision-logged=sleep(2000)")])
            .await
            .unwrap(),
    );
    let order = lab.order(11, &[(9, 3)]);
    let before = lab.balance(11).await;
    let placing = {
        let mut client = lab.client().await;
        let mut req = common::api::pb::PlaceOrderRequest::from(&order);
        req.deadline_ms = 10_000;
        tokio::spawn(async move { client.place_order(req).await })
    };
    // Every vote is in once the COMMIT record is: a branch prepared in PostgreSQL may still have
    // its YES on the way, and killing the participant then would make it a NO.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM decisions WHERE order_id = $1")
            .bind(order.id.0)
            .fetch_one(&lab.dbs.coordinator)
            .await
            .unwrap();
        if logged == 1 && lab.prepared().await.len() == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the COMMIT record was never logged with every branch prepared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.deployment
        .participant(ServiceKind::Payment)
        .take()
        .unwrap()
        .kill();
    // The branch survives the crash: it belongs to PostgreSQL, not to the process.
    assert!(lab
        .prepared()
        .await
        .contains(&format!("{}@payment", order.id)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    *lab.deployment.participant(ServiceKind::Payment) = Some(
        lab.deployment
            .start_participant(ServiceKind::Payment, &[])
            .await
            .unwrap(),
    );

    let outcome = placing
        .await
        .unwrap()
        .expect("the coordinator answers")
        .into_inner();
    assert_eq!(kind(&outcome), OutcomeKind::Committed, "{outcome:?}");
    let report = lab.wait_quiescent_and_clean(Duration::from_secs(15)).await;
    assert_eq!(report.counts.orders_confirmed, 1);
    assert_eq!(lab.balance(11).await, before - order.amount().0);
    let log =
        std::fs::read_to_string(lab.deployment.log_dir().join("participant-payment.log")).unwrap();
    assert!(
        log.contains("found prepared branches from before the restart"),
        "the restarted participant did not recover its branch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_branch_the_participant_lost_track_of_is_found_and_rolled_back() {
    // A PREPARE that succeeded but whose reply was lost, and whose ROLLBACK PREPARED then failed
    // too, leaves a branch PostgreSQL holds and the participant does not know. Made here by hand
    // (the coordinator never heard of the gid), holding the row lock of customer 12's wallet.
    let lab = start("twopc_orphan_branch", small_data_set(14), |c| {
        c.ask_after = Duration::from_millis(200)
    })
    .await;
    let gid = uuid::Uuid::new_v4();
    let name = format!("{gid}@payment");
    let mut conn = lab.dbs.payments.acquire().await.unwrap();
    for statement in [
        "BEGIN".to_string(),
        "UPDATE wallets SET balance_cents = balance_cents WHERE customer_id = 12".into(),
        format!("PREPARE TRANSACTION '{name}'"),
    ] {
        sqlx::query(&statement).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    assert!(lab.prepared().await.contains(&name));

    // The participant's sweep finds it, asks the coordinator (no record: presumed abort) and
    // rolls it back, without a restart.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lab.prepared().await.contains(&name) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lost branch still holds its locks after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its row is free again: an order of that customer commits.
    let order = lab.order(12, &[(3, 1)]);
    let outcome = lab.place(&order, 10_000).await;
    assert_eq!(kind(&outcome), OutcomeKind::Committed, "{outcome:?}");
    lab.wait_quiescent_and_clean(Duration::from_secs(15)).await;
    let log =
        std::fs::read_to_string(lab.deployment.log_dir().join("participant-payment.log")).unwrap();
    assert!(
        log.contains("prepared branches this process did not know"),
        "the participant did not report the adoption"
    );
}
