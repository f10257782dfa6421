//! Migrations reach every database and are idempotent; seeding writes exactly the data set.

use common::datagen::{DataSet, DataSetSpec};
use common::env::testing::fresh_databases;
use common::storage::Store;

#[tokio::test]
async fn every_database_is_migrated_and_migrating_again_is_a_no_op() {
    let (_, dbs) = fresh_databases("storage_migrated").await;
    let expected: [(Store, &[&str]); 5] = [
        (
            Store::Orders,
            &[
                "orders",
                "order_lines",
                "cancel_requests",
                "outbox",
                "processed_messages",
            ],
        ),
        (
            Store::Payments,
            &[
                "wallets",
                "payments",
                "voided_payments",
                "outbox",
                "processed_messages",
            ],
        ),
        (
            Store::Inventory,
            &["stock", "reservations", "outbox", "processed_messages"],
        ),
        (Store::Coordinator, &["decisions"]),
        (
            Store::Orchestrator,
            &["sagas", "outbox", "processed_messages"],
        ),
    ];
    for (store, tables) in expected {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .fetch_all(dbs.pool(store))
        .await
        .unwrap();
        for table in tables {
            assert!(
                found.iter().any(|t| t == table),
                "{store:?} lacks {table}: {found:?}"
            );
        }
    }
    dbs.migrate().await.expect("a second migration is a no-op");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&dbs.orders)
        .await
        .unwrap();
    assert_eq!(
        applied, 3,
        "orders has its own two migrations and the messaging one, once each"
    );
}

#[tokio::test]
async fn seeding_writes_exactly_the_data_set_and_reseeding_resets() {
    let (_, dbs) = fresh_databases("storage_seeded").await;
    let data = DataSet::generate(&DataSetSpec {
        customers: 300,
        skus: 40,
        ..DataSetSpec::default()
    })
    .unwrap();
    dbs.reset_and_seed(&data).await.unwrap();
    sqlx::query("UPDATE wallets SET balance_cents = 0")
        .execute(&dbs.payments)
        .await
        .unwrap();
    dbs.reset_and_seed(&data).await.unwrap();

    let wallets: Vec<(i32, i64)> =
        sqlx::query_as("SELECT customer_id, balance_cents FROM wallets ORDER BY 1")
            .fetch_all(&dbs.payments)
            .await
            .unwrap();
    let expected: Vec<(i32, i64)> = data
        .wallets
        .iter()
        .map(|w| (w.customer.0, w.balance.0))
        .collect();
    assert_eq!(wallets, expected);
    let stock: Vec<(i32, i32, i64)> =
        sqlx::query_as("SELECT sku, available, price_cents FROM stock ORDER BY 1")
            .fetch_all(&dbs.inventory)
            .await
            .unwrap();
    let expected: Vec<(i32, i32, i64)> = data
        .stock
        .iter()
        .map(|s| (s.sku.0, s.available, s.price.0))
        .collect();
    assert_eq!(stock, expected);
}

/// A connection handed back inside a transaction sqlx does not know of (what a cancelled
/// `begin()` leaves behind, sqlx#4393) is closed by the pool, never lent to the next borrower.
#[tokio::test]
async fn a_connection_returned_inside_a_transaction_is_closed() {
    let (urls, _) = fresh_databases("storage_stale_tx").await;
    let pool = common::storage::connect(Store::Orders, &urls.orders, 1)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let stale_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    sqlx::query("SELECT count(*) FROM orders")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    // One connection at most: the next borrower waits for the check, then gets a new session.
    let mut next = pool.acquire().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *next)
        .await
        .unwrap();
    assert_ne!(pid, stale_pid, "the stale session was lent out again");
    let started = std::time::Instant::now();
    loop {
        let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(stale_pid)
            .fetch_one(&mut *next)
            .await
            .unwrap();
        if alive == 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the stale session (pid {stale_pid}) is still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // An ordinary release keeps the session.
    drop(next);
    let mut again = pool.acquire().await.unwrap();
    let reused: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *again)
        .await
        .unwrap();
    assert_eq!(reused, pid, "a clean connection was closed");
}
