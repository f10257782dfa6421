//! The domain operations both protocols run, on a real database: each does its work or refuses
//! having written nothing, and a replay is recognised before anything is locked or written.

use common::datagen::{DataSet, DataSetSpec};
use common::domain::{
    CustomerId, Order, OrderId, OrderLine, OrderStatus, RejectReason, ReservationStatus, Sku,
};
use common::env::testing::fresh_databases;
use common::operations::{self, Applied, LockClock};
use common::storage::Databases;
use sqlx::Connection;

async fn seeded(test: &str) -> (Databases, DataSet) {
    let (_, dbs) = fresh_databases(test).await;
    let data = DataSet::generate(&DataSetSpec {
        seed: 11,
        customers: 10,
        skus: 5,
        ..DataSetSpec::default()
    })
    .unwrap();
    dbs.reset_and_seed(&data).await.unwrap();
    (dbs, data)
}

fn order(data: &DataSet, customer: i32, lines: &[(i32, i32)]) -> Order {
    let lines = lines
        .iter()
        .map(|(sku, qty)| OrderLine {
            sku: Sku(*sku),
            qty: *qty,
            unit_price: data.price_of(Sku(*sku)).unwrap(),
        })
        .collect();
    Order::new(OrderId::new_random(), CustomerId(customer), lines).unwrap()
}

async fn count(pool: &sqlx::PgPool, sql: &str, id: OrderId) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn operations_apply_once_refuse_cleanly_and_know_a_replay() {
    let (dbs, data) = seeded("operations").await;
    let ok = order(&data, 1, &[(3, 1), (1, 2)]);

    let mut conn = dbs.payments.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut clock = LockClock::default();
    assert_eq!(
        operations::charge(&mut tx, &ok, &mut clock).await.unwrap(),
        Applied::Done
    );
    assert!(clock.requested.is_some() && clock.granted.is_some());
    tx.commit().await.unwrap();
    let mut clock = LockClock::default();
    assert_eq!(
        operations::charge(&mut conn, &ok, &mut clock)
            .await
            .unwrap(),
        Applied::AlreadyDone
    );
    assert!(clock.requested.is_none(), "a replay locks nothing");

    // Far more than any seeded balance: refused, and the wallet is untouched.
    let rich = order(&data, 2, &[(2, 1_000_000)]);
    let before: i64 = sqlx::query_scalar("SELECT balance_cents FROM wallets WHERE customer_id = 2")
        .fetch_one(&dbs.payments)
        .await
        .unwrap();
    let refused = operations::charge(&mut conn, &rich, &mut LockClock::default())
        .await
        .unwrap();
    assert_eq!(refused, Applied::Refused(RejectReason::InsufficientFunds));
    let after: i64 = sqlx::query_scalar("SELECT balance_cents FROM wallets WHERE customer_id = 2")
        .fetch_one(&dbs.payments)
        .await
        .unwrap();
    assert_eq!(before, after);
    let stranger = order(&data, 999, &[(2, 1)]);
    assert_eq!(
        operations::charge(&mut conn, &stranger, &mut LockClock::default())
            .await
            .unwrap(),
        Applied::Refused(RejectReason::UnknownCustomer)
    );

    let mut conn = dbs.inventory.acquire().await.unwrap();
    for status in [ReservationStatus::Reserved, ReservationStatus::Committed] {
        let o = order(&data, 3, &[(4, 1), (2, 1)]);
        let done = operations::reserve(&mut conn, &o, status, &mut LockClock::default())
            .await
            .unwrap();
        assert_eq!(done, Applied::Done);
        let rows = count(
            &dbs.inventory,
            "SELECT count(*) FROM reservations WHERE order_id = $1",
            o.id,
        )
        .await;
        assert_eq!(rows, 2);
        let again = operations::reserve(&mut conn, &o, status, &mut LockClock::default())
            .await
            .unwrap();
        assert_eq!(again, Applied::AlreadyDone);
    }
    let greedy = order(&data, 3, &[(5, 1_000_000)]);
    assert_eq!(
        operations::reserve(
            &mut conn,
            &greedy,
            ReservationStatus::Reserved,
            &mut LockClock::default()
        )
        .await
        .unwrap(),
        Applied::Refused(RejectReason::OutOfStock)
    );
    let none = count(
        &dbs.inventory,
        "SELECT count(*) FROM reservations WHERE order_id = $1",
        greedy.id,
    )
    .await;
    assert_eq!(none, 0, "a refusal writes nothing");
    // One line fits, the next does not: nothing is taken from either.
    let available = |sku: i32| {
        let pool = dbs.inventory.clone();
        async move {
            sqlx::query_scalar::<_, i32>("SELECT available FROM stock WHERE sku = $1")
                .bind(sku)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let before = (available(4).await, available(5).await);
    let half = order(&data, 3, &[(4, 1), (5, 1_000_000)]);
    let mut wrong_price = order(&data, 3, &[(4, 1), (1, 1)]).lines().to_vec();
    wrong_price[1].unit_price.0 += 1;
    let wrong_price = Order::new(OrderId::new_random(), CustomerId(3), wrong_price).unwrap();
    let unknown = Order::new(
        OrderId::new_random(),
        CustomerId(3),
        vec![
            half.lines()[0],
            OrderLine {
                sku: Sku(999),
                qty: 1,
                unit_price: half.lines()[0].unit_price,
            },
        ],
    )
    .unwrap();
    for (o, reason) in [
        (&half, RejectReason::OutOfStock),
        (&wrong_price, RejectReason::PriceMismatch),
        (&unknown, RejectReason::UnknownSku),
    ] {
        let refused = operations::reserve(
            &mut conn,
            o,
            ReservationStatus::Reserved,
            &mut LockClock::default(),
        )
        .await
        .unwrap();
        assert_eq!(refused, Applied::Refused(reason));
    }
    assert_eq!((available(4).await, available(5).await), before);

    let mut conn = dbs.orders.acquire().await.unwrap();
    for status in [OrderStatus::Pending, OrderStatus::Confirmed] {
        let o = order(&data, 4, &[(1, 1)]);
        let mut clock = LockClock::default();
        assert_eq!(
            operations::create_order(&mut conn, &o, status, &mut clock)
                .await
                .unwrap(),
            Applied::Done
        );
        assert_eq!(
            operations::create_order(&mut conn, &o, status, &mut clock)
                .await
                .unwrap(),
            Applied::AlreadyDone
        );
        let lines = count(
            &dbs.orders,
            "SELECT count(*) FROM order_lines WHERE order_id = $1",
            o.id,
        )
        .await;
        assert_eq!(lines, 1);
    }
}
