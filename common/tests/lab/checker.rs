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
    let price = data.price_of(Sku(2)).unwrap().0;
    sqlx::query(
        "INSERT INTO orders (id, customer_id, amount_cents, status) VALUES ($1, 5, $2, 'PENDING')",
    )
    .bind(pending)
    .bind(price)
    .execute(&dbs.orders)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_lines (order_id, sku, qty, unit_price_cents) VALUES ($1, 2, 1, $2)",
    )
    .bind(pending)
    .bind(price)
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

#[tokio::test]
async fn says_where_unanswered_orders_ended() {
    use common::checker::fates_of_unanswered;
    use common::domain::OrderId;
    let (dbs, _, confirmed) = seeded_with_history("checker_unanswered").await;
    let never_written = OrderId(Uuid::new_v4());
    let fates = fates_of_unanswered(&dbs, &[OrderId(confirmed), never_written, never_written])
        .await
        .unwrap();
    assert_eq!(
        fates,
        [("CONFIRMED".to_string(), 1), ("NONE".to_string(), 2)].into()
    );
}

fn only_atomicity_problem(report: &CheckReport, order_id: Uuid) -> String {
    match only_violation(report) {
        Violation::Atomicity { order, problem } => {
            assert_eq!(order.order_id.unwrap().0, order_id);
            problem.clone()
        }
        other => panic!("not an atomicity violation: {other:?}"),
    }
}

/// Runs `sql` with the order id as $1 against one database.
async fn plant(pool: &sqlx::PgPool, sql: &str, order: Uuid) {
    sqlx::query(sql).bind(order).execute(pool).await.unwrap();
}

#[tokio::test]
async fn finds_a_payment_from_another_customer() {
    let (dbs, data, confirmed) = seeded_with_history("checker_payer").await;
    // Customer 2 pays for customer 1's order; both wallets stay consistent with their payments.
    plant(
        &dbs.payments,
        "UPDATE payments SET customer_id = 2 WHERE order_id = $1",
        confirmed,
    )
    .await;
    plant(
        &dbs.payments,
        "UPDATE wallets w SET balance_cents = balance_cents + CASE w.customer_id WHEN 1 THEN p.amount_cents ELSE -p.amount_cents END \
         FROM payments p WHERE p.order_id = $1 AND w.customer_id IN (1, 2)",
        confirmed,
    )
    .await;
    let report = check(&dbs, &data).await.unwrap();
    let problem = only_atomicity_problem(&report, confirmed);
    assert!(problem.contains("another customer"), "{problem}");
}

#[tokio::test]
async fn finds_an_order_amount_that_is_not_the_sum_of_its_lines() {
    let (dbs, data, confirmed) = seeded_with_history("checker_amount").await;
    // The order, its payment and the wallet agree with each other, not with the lines.
    plant(
        &dbs.orders,
        "UPDATE orders SET amount_cents = amount_cents - 1 WHERE id = $1",
        confirmed,
    )
    .await;
    plant(
        &dbs.payments,
        "UPDATE payments SET amount_cents = amount_cents - 1 WHERE order_id = $1",
        confirmed,
    )
    .await;
    plant(&dbs.payments, "UPDATE wallets SET balance_cents = balance_cents + 1 WHERE customer_id = 1 AND $1::uuid IS NOT NULL", confirmed).await;
    let report = check(&dbs, &data).await.unwrap();
    let problem = only_atomicity_problem(&report, confirmed);
    assert!(problem.contains("sum of its lines"), "{problem}");
}

#[tokio::test]
async fn finds_a_confirmed_order_at_another_price_than_the_stock() {
    let (dbs, data, confirmed) = seeded_with_history("checker_price").await;
    // One unit of sku 5 sold a cent cheaper, every amount adjusted to match.
    plant(&dbs.orders, "UPDATE order_lines SET unit_price_cents = unit_price_cents - 1 WHERE order_id = $1 AND sku = 5", confirmed).await;
    plant(
        &dbs.orders,
        "UPDATE orders SET amount_cents = amount_cents - 1 WHERE id = $1",
        confirmed,
    )
    .await;
    plant(
        &dbs.payments,
        "UPDATE payments SET amount_cents = amount_cents - 1 WHERE order_id = $1",
        confirmed,
    )
    .await;
    plant(&dbs.payments, "UPDATE wallets SET balance_cents = balance_cents + 1 WHERE customer_id = 1 AND $1::uuid IS NOT NULL", confirmed).await;
    let report = check(&dbs, &data).await.unwrap();
    let problem = only_atomicity_problem(&report, confirmed);
    assert!(problem.contains("price"), "{problem}");
}

#[tokio::test]
async fn reads_the_decision_log_both_ways() {
    let (dbs, data, confirmed) = seeded_with_history("checker_decisions").await;
    let log = "INSERT INTO decisions (gid, order_id, participants) VALUES ($1::text, $1, '{order,payment,inventory}')";
    plant(&dbs.coordinator, log, confirmed).await;
    let report = check(&dbs, &data).await.unwrap();
    assert!(
        report.is_clean(),
        "a CONFIRMED order with its COMMIT: {:?}",
        report.describe()
    );

    // A COMMIT for an order that ended CANCELLED.
    let cancelled: Uuid = sqlx::query_scalar("SELECT id FROM orders WHERE status = 'CANCELLED'")
        .fetch_one(&dbs.orders)
        .await
        .unwrap();
    plant(&dbs.coordinator, log, cancelled).await;
    let report = check(&dbs, &data).await.unwrap();
    let problem = only_atomicity_problem(&report, cancelled);
    assert!(problem.contains("COMMIT logged"), "{problem}");
    plant(
        &dbs.coordinator,
        "DELETE FROM decisions WHERE order_id = $1",
        cancelled,
    )
    .await;

    // Under 2PC (the log is in use) a CONFIRMED order without its COMMIT.
    let unlogged = Uuid::new_v4();
    apply_order(&dbs, &data, unlogged, 8, &[(3, 2)], "CONFIRMED").await;
    let report = check(&dbs, &data).await.unwrap();
    let problem = only_atomicity_problem(&report, unlogged);
    assert!(problem.contains("without a COMMIT"), "{problem}");
}
