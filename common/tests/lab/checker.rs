//! The invariant checker finds every kind of planted violation, with the rows that show it, and
//! nothing on a data set whose orders were all applied or compensated correctly.

use common::checker::{check, CheckReport, Leftover, Violation};
use common::datagen::{DataSet, DataSetSpec};
use common::domain::{CustomerId, Sku};
use common::env::testing::fresh_databases;
use common::storage::Databases;
use sqlx::Executor;
use uuid::Uuid;

/// A seeded data set with one order applied everywhere (CONFIRMED) and one fully compensated
/// (CANCELLED), written the way a correct protocol would leave them.
async fn seeded_with_history(test: &str) -> (Databases, DataSet, Uuid) {
    let (_, dbs) = fresh_databases(test).await;
    let data = DataSet::generate(&DataSetSpec {
        seed: 7,
        customers: 20,
        skus: 10,
        ..DataSetSpec::default()
    })
    .unwrap();
    dbs.reset_and_seed(&data).await.unwrap();
    let confirmed = Uuid::new_v4();
    apply_order(&dbs, &data, confirmed, 1, &[(2, 3), (5, 1)], "CONFIRMED").await;
    apply_order(&dbs, &data, Uuid::new_v4(), 4, &[(2, 1)], "CANCELLED").await;
    (dbs, data, confirmed)
}

/// Writes an order's rows in every service. CONFIRMED takes money and stock for good; CANCELLED
/// leaves a refunded payment and released reservations (a saga that compensated).
async fn apply_order(
    dbs: &Databases,
    data: &DataSet,
    id: Uuid,
    customer: i32,
    lines: &[(i32, i32)],
    status: &str,
) {
    let amount: i64 = lines
        .iter()
        .map(|(sku, qty)| data.price_of(Sku(*sku)).unwrap().0 * i64::from(*qty))
        .sum();
    let confirmed = status == "CONFIRMED";
    sqlx::query(
        "INSERT INTO orders (id, customer_id, amount_cents, status) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(customer)
    .bind(amount)
    .bind(status)
    .execute(&dbs.orders)
    .await
    .unwrap();
    for (sku, qty) in lines {
        sqlx::query("INSERT INTO order_lines (order_id, sku, qty, unit_price_cents) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(sku)
            .bind(qty)
            .bind(data.price_of(Sku(*sku)).unwrap().0)
            .execute(&dbs.orders)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO reservations (order_id, sku, qty, status) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(sku)
        .bind(qty)
        .bind(if confirmed { "COMMITTED" } else { "RELEASED" })
        .execute(&dbs.inventory)
        .await
        .unwrap();
        if confirmed {
            sqlx::query("UPDATE stock SET available = available - $2 WHERE sku = $1")
                .bind(sku)
                .bind(qty)
                .execute(&dbs.inventory)
                .await
                .unwrap();
        }
    }
    sqlx::query("INSERT INTO payments (order_id, customer_id, amount_cents, status) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(customer)
        .bind(amount)
        .bind(if confirmed { "CAPTURED" } else { "REFUNDED" })
        .execute(&dbs.payments)
        .await
        .unwrap();
    if confirmed {
        sqlx::query("UPDATE wallets SET balance_cents = balance_cents - $2 WHERE customer_id = $1")
            .bind(customer)
            .bind(amount)
            .execute(&dbs.payments)
            .await
            .unwrap();
    }
}

fn only_violation(report: &CheckReport) -> &Violation {
    assert!(
        report.leftovers.is_empty(),
        "unexpected leftovers: {:?}",
        report.leftovers
    );
    assert_eq!(
        report.violations.len(),
        1,
        "expected exactly one violation: {:#?}",
        report.violations
    );
    &report.violations[0]
}

#[tokio::test]
async fn a_correct_history_is_clean() {
    let (dbs, data, _) = seeded_with_history("checker_clean").await;
    let report = check(&dbs, &data).await.unwrap();
    assert!(report.is_clean(), "{:#?}", report.describe());
    assert_eq!(report.counts.orders_confirmed, 1);
    assert_eq!(report.counts.orders_cancelled, 1);
    assert_eq!(report.counts.payments_captured, 1);
    assert_eq!(report.counts.reservations_committed, 2);
}

#[tokio::test]
async fn finds_created_stock() {
    let (dbs, data, _) = seeded_with_history("checker_stock").await;
    sqlx::query("UPDATE stock SET available = available + 1 WHERE sku = 2")
        .execute(&dbs.inventory)
        .await
        .unwrap();
    let report = check(&dbs, &data).await.unwrap();
    let initial = i64::from(data.stock[1].available);
    assert_eq!(
        only_violation(&report),
        &Violation::Stock {
            sku: Sku(2),
            initial,
            available: initial - 3 + 1,
            held: 3
        }
    );
}

#[tokio::test]
async fn finds_lost_money() {
    let (dbs, data, _) = seeded_with_history("checker_money").await;
    sqlx::query("UPDATE wallets SET balance_cents = balance_cents - 1 WHERE customer_id = 3")
        .execute(&dbs.payments)
        .await
        .unwrap();
    let report = check(&dbs, &data).await.unwrap();
    match only_violation(&report) {
        Violation::Money {
            customer,
            initial,
            balance,
            captured,
        } => {
            assert_eq!(*customer, CustomerId(3));
            assert_eq!(initial.0, balance.0 + 1 + captured.0);
        }
        other => panic!("not a money violation: {other:?}"),
    }
}

#[tokio::test]
async fn finds_a_confirmed_order_without_stock_and_a_cancelled_one_still_charged() {
    let (dbs, data, confirmed) = seeded_with_history("checker_atomicity").await;
    // Undo the stock of the confirmed order consistently: conservation holds, atomicity does not.
    sqlx::query("UPDATE stock s SET available = s.available + r.qty FROM reservations r WHERE r.sku = s.sku AND r.order_id = $1")
        .bind(confirmed)
        .execute(&dbs.inventory)
        .await
        .unwrap();
    sqlx::query("DELETE FROM reservations WHERE order_id = $1")
        .bind(confirmed)
        .execute(&dbs.inventory)
        .await
        .unwrap();
    let report = check(&dbs, &data).await.unwrap();
    match only_violation(&report) {
        Violation::Atomicity { order, problem } => {
            assert_eq!(order.order_id.unwrap().0, confirmed);
            assert!(
                problem.contains("CONFIRMED") && problem.contains("reservations"),
                "{problem}"
            );
            assert!(
                order.payment.is_some() && order.reservations.is_empty(),
                "the evidence shows the rows: {order:?}"
            );
        }
        other => panic!("not an atomicity violation: {other:?}"),
    }

    let (dbs, data, _) = seeded_with_history("checker_atomicity_cancel").await;
    // A cancelled order whose payment was never refunded, money consistent with the capture.
    let charged = Uuid::new_v4();
    apply_order(&dbs, &data, charged, 6, &[(7, 1)], "CONFIRMED").await;
    sqlx::query("UPDATE orders SET status = 'CANCELLED' WHERE id = $1")
        .bind(charged)
        .execute(&dbs.orders)
        .await
        .unwrap();
    sqlx::query("UPDATE reservations SET status = 'RELEASED' WHERE order_id = $1")
        .bind(charged)
        .execute(&dbs.inventory)
        .await
        .unwrap();
    sqlx::query("UPDATE stock SET available = available + 1 WHERE sku = 7")
        .execute(&dbs.inventory)
        .await
        .unwrap();
    let report = check(&dbs, &data).await.unwrap();
    match only_violation(&report) {
        Violation::Atomicity { problem, .. } => assert!(
            problem.contains("CANCELLED order whose payment"),
            "{problem}"
        ),
        other => panic!("not an atomicity violation: {other:?}"),
    }
}

#[tokio::test]
async fn finds_a_hanging_prepared_transaction() {
    let (dbs, data, _) = seeded_with_history("checker_prepared").await;
    let mut conn = dbs.inventory.acquire().await.unwrap();
    conn.execute("BEGIN").await.unwrap();
    conn.execute("SELECT available FROM stock WHERE sku = 1 FOR UPDATE")
        .await
        .unwrap();
    conn.execute("PREPARE TRANSACTION 'planted-branch-1'")
        .await
        .unwrap();
    drop(conn);
    let report = check(&dbs, &data).await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(!report.is_clean());
    match report.leftovers.as_slice() {
        [Leftover::PreparedTransaction { gid, database, .. }] => {
            assert_eq!(gid, "planted-branch-1");
            assert!(database.ends_with("inventory"), "{database}");
        }
        other => panic!("expected the prepared branch: {other:?}"),
    }
    dbs.inventory
        .execute("ROLLBACK PREPARED 'planted-branch-1'")
        .await
        .unwrap();
}

#[tokio::test]
async fn reports_unfinished_orders_and_sagas_as_leftovers() {
    let (dbs, data, _) = seeded_with_history("checker_unfinished").await;
    let pending = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO orders (id, customer_id, amount_cents, status) VALUES ($1, 5, 100, 'PENDING')",
    )
    .bind(pending)
    .execute(&dbs.orders)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sagas (order_id, state, order_json) VALUES ($1, 'RESERVING_STOCK', '{}')",
    )
    .bind(pending)
    .execute(&dbs.orchestrator)
    .await
    .unwrap();
    let report = check(&dbs, &data).await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.leftovers.len(), 2, "{:?}", report.leftovers);
    assert!(report.leftovers.iter().any(
        |l| matches!(l, Leftover::PendingOrder { order } if order.order_id.unwrap().0 == pending)
    ));
    assert!(report
        .leftovers
        .iter()
        .any(|l| matches!(l, Leftover::OpenSaga { state, .. } if state == "RESERVING_STOCK")));
}

#[tokio::test]
async fn finds_answers_the_databases_contradict() {
    use common::checker::check_outcomes;
    use common::domain::{OrderId, OutcomeKind};
    let (dbs, _, confirmed) = seeded_with_history("checker_told").await;
    let never_written = OrderId(Uuid::new_v4());
    let told = [
        (OrderId(confirmed), OutcomeKind::Committed), // right
        (OrderId(confirmed), OutcomeKind::Rejected),  // wrong: it is CONFIRMED
        (never_written, OutcomeKind::Committed),      // wrong: no such order
        (never_written, OutcomeKind::Aborted),        // right: nothing was written
        (OrderId(confirmed), OutcomeKind::Undecided), // anything goes
    ];
    let violations = check_outcomes(&dbs, &told).await.unwrap();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations.contains(&Violation::ClientOutcome {
        order_id: OrderId(confirmed),
        told: OutcomeKind::Rejected,
        status: Some("CONFIRMED".into())
    }));
    assert!(violations.contains(&Violation::ClientOutcome {
        order_id: never_written,
        told: OutcomeKind::Committed,
        status: None
    }));
}
