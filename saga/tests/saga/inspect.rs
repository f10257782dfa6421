//! What tests read from a deployment: the checker, a snapshot of every business row, consumer
//! group lag and each process's metrics.
// Shared by three test binaries (saga, broker_restart, measure); each uses only a part.
#![allow(dead_code)]

use super::harness::{Deployment, Role, PARTITIONS};
use common::checker::{check, CheckReport};
use common::metrics::pb as pb_metrics;
use common::metrics::{decode, MetricsClient};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use saga::Mode;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

impl Deployment {
    pub async fn check(&self) -> CheckReport {
        check(&self.dbs, &self.data).await.expect("checker runs")
    }

    /// Asserts the checker finds nothing, printing what it found otherwise.
    pub async fn assert_clean(&self) -> CheckReport {
        let report = self.check().await;
        assert!(
            report.is_clean(),
            "{}: checker found:\n{}",
            self.name,
            report.describe().join("\n")
        );
        report
    }

    /// Every balance, stock level and order/payment/reservation status: what replays must not change.
    pub async fn state(&self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        let rows = |pool: &sqlx::PgPool, sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_as::<_, (String, String)>(sql)
                    .fetch_all(&pool)
                    .await
                    .unwrap()
            }
        };
        let queries: [(&sqlx::PgPool, &'static str); 5] = [
            (&self.dbs.payments, "SELECT 'wallet ' || customer_id, balance_cents::text FROM wallets"),
            (&self.dbs.payments, "SELECT 'payment ' || order_id, status || ' ' || amount_cents FROM payments"),
            (&self.dbs.inventory, "SELECT 'stock ' || sku, available::text FROM stock"),
            (&self.dbs.inventory, "SELECT 'reservation ' || order_id || ' ' || sku, status || ' ' || qty FROM reservations"),
            (&self.dbs.orders, "SELECT 'order ' || id, status || ' ' || coalesce(reason, '') FROM orders"),
        ];
        for (pool, sql) in queries {
            state.extend(rows(pool, sql).await);
        }
        state
    }

    /// Waits until the consumer group of `role` (with `suffix`) has committed offsets up to the
    /// end of every topic it reads.
    pub async fn wait_caught_up(&self, role: Role, suffix: &str, timeout: Duration) {
        let topic = match (self.mode, role) {
            (Mode::Choreographed, _) => self.topics.events(),
            (Mode::Orchestrated, Role::Orchestrator) => self.topics.replies(),
            (Mode::Orchestrated, Role::Order) => self.topics.commands(saga::ServiceKind::Order),
            (Mode::Orchestrated, Role::Payment) => self.topics.commands(saga::ServiceKind::Payment),
            (Mode::Orchestrated, Role::Inventory) => {
                self.topics.commands(saga::ServiceKind::Inventory)
            }
        };
        let group = format!("{}.{}{}", self.topics.prefix, role.name(), suffix);
        let bootstrap = self.bootstrap.clone();
        let started = Instant::now();
        loop {
            let (b, g, t) = (bootstrap.clone(), group.clone(), topic.clone());
            let lag = tokio::task::spawn_blocking(move || group_lag(&b, &g, &t))
                .await
                .unwrap();
            if lag == Some(0) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "group {group} still lags ({lag:?}) after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn reset_metrics(&self, role: Role) {
        let url = format!("http://{}", self.addrs[&role]);
        let mut client = MetricsClient::connect(url)
            .await
            .expect("metrics reachable");
        let reset = pb_metrics::SnapshotRequest { reset: true };
        client.get_snapshot(reset).await.unwrap();
    }

    pub async fn metrics(
        &self,
        role: Role,
    ) -> (BTreeMap<String, Histogram<u64>>, HashMap<String, u64>) {
        let mut client = MetricsClient::connect(format!("http://{}", self.addrs[&role]))
            .await
            .expect("metrics reachable");
        let snapshot = client
            .get_snapshot(pb_metrics::SnapshotRequest { reset: false })
            .await
            .unwrap()
            .into_inner();
        (decode(&snapshot).unwrap(), snapshot.counters)
    }

    /// The settings the process reports running with.
    pub async fn settings(&self, role: Role) -> HashMap<String, String> {
        let mut client = MetricsClient::connect(format!("http://{}", self.addrs[&role]))
            .await
            .expect("metrics reachable");
        client
            .get_snapshot(pb_metrics::SnapshotRequest { reset: true })
            .await
            .unwrap()
            .into_inner()
            .settings
    }
}

/// Messages the group has not committed past, over every partition of `topic`.
fn group_lag(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .ok()?;
    let mut lag = 0;
    for p in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .ok()?;
        let at = match committed.find_partition(topic, p)?.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => 0,
        };
        lag += (high - at).max(0);
    }
    Some(lag)
}
