//! A fresh database set and a 2PC deployment per test.

use common::api::pb::{Outcome, OutcomeKind, PlaceOrderRequest};
use common::api::OrderApiClient;
use common::checker::{check, CheckReport};
use common::datagen::{DataSet, DataSetSpec};
use common::domain::{CustomerId, Order, OrderId, OrderLine, Sku};
use common::env::testing::{fresh_databases, shared_env};
use common::storage::Databases;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use twopc::deployment::{Deployment, DeploymentConfig};

pub struct Lab {
    pub deployment: Deployment,
    pub dbs: Databases,
    pub data: DataSet,
}

/// Seeds `spec` into fresh databases named after `test` and starts a deployment, after `tweak`
/// has adjusted its configuration.
pub async fn start(
    test: &str,
    spec: DataSetSpec,
    tweak: impl FnOnce(&mut DeploymentConfig),
) -> Lab {
    let env = shared_env().await;
    let (urls, dbs) = fresh_databases(test).await;
    let data = DataSet::generate(&spec).unwrap();
    dbs.reset_and_seed(&data).await.unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_coordinator"))
        .parent()
        .unwrap();
    let mut config = DeploymentConfig::new(bin_dir, env.run_dir().join("logs").join(test), urls);
    config.env.push((
        "RUST_LOG".into(),
        "info,twopc=debug,sqlx=warn,h2=warn".into(),
    ));
    tweak(&mut config);
    let deployment = Deployment::start(config)
        .await
        .expect("the 2PC deployment starts");
    Lab {
        deployment,
        dbs,
        data,
    }
}

impl Lab {
    pub async fn client(&self) -> OrderApiClient<Channel> {
        OrderApiClient::connect(self.deployment.url())
            .await
            .expect("coordinator reachable")
    }

    /// An order of `lines` (sku, qty) at catalog prices.
    pub fn order(&self, customer: i32, lines: &[(i32, i32)]) -> Order {
        let lines = lines
            .iter()
            .map(|(sku, qty)| OrderLine {
                sku: Sku(*sku),
                qty: *qty,
                unit_price: self.data.price_of(Sku(*sku)).unwrap(),
            })
            .collect();
        Order::new(OrderId::new_random(), CustomerId(customer), lines).unwrap()
    }

    pub async fn place(&self, order: &Order, deadline_ms: u32) -> Outcome {
        let mut req = PlaceOrderRequest::from(order);
        req.deadline_ms = deadline_ms;
        self.client()
            .await
            .place_order(req)
            .await
            .expect("PlaceOrder answers")
            .into_inner()
    }

    pub async fn check(&self) -> CheckReport {
        check(&self.dbs, &self.data).await.unwrap()
    }

    /// Prepared transactions in this test's databases.
    pub async fn prepared(&self) -> Vec<String> {
        let mut gids = Vec::new();
        for pool in [&self.dbs.orders, &self.dbs.payments, &self.dbs.inventory] {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            gids.extend(rows);
        }
        gids
    }

    /// Waits until no branch is prepared and the checker finds nothing (or panics with what it found).
    pub async fn wait_quiescent_and_clean(&self, within: Duration) -> CheckReport {
        let deadline = Instant::now() + within;
        loop {
            let report = self.check().await;
            if report.is_clean() {
                return report;
            }
            if Instant::now() > deadline {
                panic!(
                    "not quiescent and clean after {within:?}: {:#?}",
                    report.describe()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn balance(&self, customer: i32) -> i64 {
        sqlx::query_scalar("SELECT balance_cents FROM wallets WHERE customer_id = $1")
            .bind(customer)
            .fetch_one(&self.dbs.payments)
            .await
            .unwrap()
    }

    pub async fn available(&self, sku: i32) -> i32 {
        sqlx::query_scalar("SELECT available FROM stock WHERE sku = $1")
            .bind(sku)
            .fetch_one(&self.dbs.inventory)
            .await
            .unwrap()
    }
}

pub fn kind(outcome: &Outcome) -> OutcomeKind {
    outcome.kind()
}

/// A small data set: 50 customers with 1,000.00 to 2,000.00, 20 skus with 100 to 200 units.
pub fn small_data_set(seed: u64) -> DataSetSpec {
    DataSetSpec {
        seed,
        customers: 50,
        skus: 20,
        balance_cents: (100_000, 200_000),
        stock: (100, 200),
        price_cents: (100, 2_000),
    }
}
