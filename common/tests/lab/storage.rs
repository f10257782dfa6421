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
            &["orders", "order_lines", "outbox", "processed_messages"],
        ),
        (
            Store::Payments,
            &["wallets", "payments", "outbox", "processed_messages"],
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
        applied, 2,
        "orders has its own migration and the messaging one, once each"
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
