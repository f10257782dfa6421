//! A broker restart in the middle of a run, in both modes at once: sagas stall while Kafka is
//! down (PlaceOrder still accepts, the outbox holds the messages), then every saga completes
//! after it returns, nothing is lost, and the checker finds nothing. This needs its own
//! environment (the shared one cannot be restarted) with a fixed Kafka port so clients reconnect.

#[path = "saga/harness.rs"]
mod harness;
#[path = "saga/inspect.rs"]
mod inspect;
#[path = "saga/workload.rs"]
mod workload;

use common::env::{LabEnv, LabEnvConfig};
use common::storage::Databases;
use harness::Deployment;
use saga::Mode;
use std::time::Duration;

/// Orders per mode; the broker stops about a second in, while they are in flight.
const ORDERS: usize = 200;

async fn deployment(env: &LabEnv, name: &str, mode: Mode) -> Deployment {
    let urls = env
        .postgres
        .recreate_databases(&format!("{name}_"))
        .await
        .expect("databases");
    let dbs = Databases::connect(&urls, 8).await.expect("connect");
    dbs.migrate().await.expect("migrate");
    Deployment::new(
        name,
        mode,
        urls,
        dbs,
        env.bootstrap_servers(),
        env.run_dir().join("saga-logs"),
    )
    .await
}

async fn accepted_orders(lab: &Deployment) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&lab.dbs.orders)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_run_stalls_then_every_saga_completes() {
    let run_dir = common::env::testing::test_run_dir("saga-broker-restart");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut config = LabEnvConfig::new(&run_dir);
    config.kafka.port = Some(common::env::ports::free_port().unwrap());
    let mut env = LabEnv::start(&config).await.expect("environment starts");

    let mut orchestrated = deployment(&env, "restart_orchestrated", Mode::Orchestrated).await;
    let mut choreographed = deployment(&env, "restart_choreographed", Mode::Choreographed).await;
    orchestrated.start_all().await;
    choreographed.start_all().await;

    let restart = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tokio::task::block_in_place(|| env.kafka.stop());
        tokio::time::sleep(Duration::from_secs(2)).await;
        env.kafka
            .broker_mut(1)
            .expect("one broker")
            .restart()
            .await
            .expect("broker restarts");
    };
    let load_o = workload::run(
        &orchestrated,
        workload::mixed(&orchestrated.data, ORDERS, 21),
        8,
        2_000,
    );
    let load_c = workload::run(
        &choreographed,
        workload::mixed(&choreographed.data, ORDERS, 22),
        8,
        2_000,
    );
    let (_, result_o, result_c) = tokio::join!(restart, load_o, load_c);
    println!("orchestrated during restart: {:?}", result_o.outcomes);
    println!("choreographed during restart: {:?}", result_c.outcomes);
    let stalled: usize = [&result_o, &result_c]
        .iter()
        .map(|r| {
            r.outcomes
                .iter()
                .filter(|((_, k), _)| *k == Some(common::domain::OutcomeKind::Undecided))
                .map(|(_, n)| n)
                .sum::<usize>()
        })
        .sum();
    assert!(
        stalled > 0,
        "the outage should have left some clients without an outcome by their deadline"
    );

    for lab in [&orchestrated, &choreographed] {
        lab.wait_quiescent(Duration::from_secs(90)).await;
        assert_eq!(
            accepted_orders(lab).await,
            ORDERS as i64,
            "{}: every accepted order exists",
            lab.name
        );
        let report = lab.assert_clean().await;
        assert_eq!(
            report.counts.orders_confirmed + report.counts.orders_cancelled,
            ORDERS as u64,
            "{}: every order is final",
            lab.name
        );
    }
}
