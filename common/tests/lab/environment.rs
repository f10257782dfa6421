//! The environment's life cycle: cold and warm starts, a second start over a running one, clear
//! errors for bad input with nothing left running, and no stray process after stop.

use common::env::kafka::KafkaConfig;
use common::env::process::pid_alive;
use common::env::testing::test_run_dir;
use common::env::{EnvError, LabEnv, LabEnvConfig};
use common::kafka_clients::create_topics;
use common::storage::{Databases, StorageError};
use std::net::TcpListener;
use std::time::Duration;
use tokio::sync::Mutex;

/// Tests that start their own environment run one at a time: two cores cannot start many JVMs.
static OWN_ENV: Mutex<()> = Mutex::const_new(());

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = test_run_dir(&format!("env-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every live process whose command line mentions `needle` (a run or data directory).
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

async fn assert_usable(env: &LabEnv) {
    let dbs = Databases::connect(&env.database_urls(), 2)
        .await
        .expect("databases accept connections");
    dbs.migrate().await.expect("databases migrate");
    let max_prepared: String = sqlx::query_scalar("SHOW max_prepared_transactions")
        .fetch_one(&dbs.orders)
        .await
        .unwrap();
    assert!(max_prepared.parse::<u32>().unwrap() >= 256);
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&dbs.orders)
        .await
        .unwrap();
    assert_eq!(fsync, "on");
    common::kafka_clients::create_topics(&env.bootstrap_servers(), &["env-probe"], 1)
        .await
        .expect("broker answers");
}

fn wait_dead(pid: u32) -> bool {
    for _ in 0..200 {
        if !pid_alive(pid as i32) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_cold_then_warm_and_stop_leaves_nothing() {
    let _guard = OWN_ENV.lock().await;
    let dir = fresh_dir("cold-warm");
    let cold = LabEnv::start(&LabEnvConfig::new(&dir))
        .await
        .expect("cold start");
    assert_usable(&cold).await;
    create_topics(&cold.bootstrap_servers(), &["kept"], 1)
        .await
        .unwrap();
    let (pg_pid, kafka_pid) = (cold.postgres.pid(), cold.kafka.pids()[0]);
    let data_dir = cold.postgres.data_dir().display().to_string();
    println!("cold start: {:?}", cold.start_time);
    cold.stop();
    assert!(
        wait_dead(pg_pid) && wait_dead(kafka_pid),
        "servers still alive after stop"
    );

    let warm = LabEnv::start(&LabEnvConfig::new(&dir))
        .await
        .expect("warm start");
    assert_usable(&warm).await;
    println!("warm start: {:?}", warm.start_time);
    assert!(
        topics(&warm.bootstrap_servers()).contains(&"kept".to_string()),
        "a warm start keeps the broker's topics"
    );
    drop(warm); // Drop stops too.

    let mut config = LabEnvConfig::new(&dir);
    config.fresh_kafka = true;
    let fresh = LabEnv::start(&config).await.expect("fresh start");
    assert_usable(&fresh).await;
    assert!(
        !topics(&fresh.bootstrap_servers()).contains(&"kept".to_string()),
        "a fresh start empties the broker's storage"
    );
    drop(fresh);
    assert_eq!(
        processes_mentioning(&dir.display().to_string()),
        Vec::<i32>::new(),
        "stray processes"
    );
    assert_eq!(
        processes_mentioning(&data_dir),
        Vec::<i32>::new(),
        "stray postgres processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_over_a_running_environment_takes_it_over() {
    let _guard = OWN_ENV.lock().await;
    let dir = fresh_dir("twice");
    let first = LabEnv::start(&LabEnvConfig::new(&dir))
        .await
        .expect("first start");
    let (pg_pid, kafka_pid) = (first.postgres.pid(), first.kafka.pids()[0]);
    // The first is still running: the second start stops it and runs on the same data.
    let second = LabEnv::start(&LabEnvConfig::new(&dir))
        .await
        .expect("second start over a running one");
    assert!(
        wait_dead(pg_pid) && wait_dead(kafka_pid),
        "the first environment's servers survived"
    );
    assert_usable(&second).await;
    drop(first); // Stopping what is already gone is harmless.
    assert_usable(&second).await;
    let dir_text = dir.display().to_string();
    drop(second);
    assert_eq!(processes_mentioning(&dir_text), Vec::<i32>::new());
}

fn one_line(err: &EnvError) -> String {
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "not one line: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_java_is_one_clear_line_and_starts_nothing() {
    let _guard = OWN_ENV.lock().await;
    let dir = fresh_dir("no-java");
    let mut config = LabEnvConfig::new(&dir);
    config.kafka = KafkaConfig {
        java: "/nonexistent/bin/java".into(),
        ..KafkaConfig::default()
    };
    let err = LabEnv::start(&config)
        .await
        .expect_err("must fail without java");
    let text = one_line(&err);
    assert!(matches!(err, EnvError::JavaMissing { .. }), "{text}");
    assert!(
        text.contains("Java 17") && text.contains("apt-get install"),
        "{text}"
    );
    assert!(
        !dir.join("logs/postgres.log").exists(),
        "PostgreSQL was started before the check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_taken_is_one_clear_line_and_leaves_nothing_running() {
    let _guard = OWN_ENV.lock().await;
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();

    let dir = fresh_dir("pg-port");
    let mut config = LabEnvConfig::new(&dir);
    config.postgres.port = Some(port);
    let err = LabEnv::start(&config)
        .await
        .expect_err("PostgreSQL port is taken");
    let text = one_line(&err);
    assert!(
        text.contains(&port.to_string())
            && text.contains("already in use")
            && text.starts_with("PostgreSQL"),
        "{text}"
    );

    // Kafka's port taken: PostgreSQL started first and must be stopped again.
    let dir = fresh_dir("kafka-port");
    let mut config = LabEnvConfig::new(&dir);
    config.kafka.port = Some(port);
    let err = LabEnv::start(&config)
        .await
        .expect_err("Kafka port is taken");
    let text = one_line(&err);
    assert!(
        text.starts_with("Kafka port") && text.contains("already in use"),
        "{text}"
    );
    assert!(
        dir.join("logs/postgres.log").exists(),
        "PostgreSQL should have started first"
    );
    assert_eq!(
        processes_mentioning(&dir.display().to_string()),
        Vec::<i32>::new()
    );
    let data_dir = common::env::postgres::data_dir(&dir, None).unwrap();
    assert_eq!(
        processes_mentioning(&data_dir.display().to_string()),
        Vec::<i32>::new(),
        "half-started PostgreSQL"
    );
}

#[tokio::test]
async fn bad_database_urls_are_one_clear_line() {
    let urls = common::storage::DatabaseUrls {
        orders: "mysql//nonsense".into(),
        payments: String::new(),
        inventory: String::new(),
        coordinator: String::new(),
        orchestrator: String::new(),
    };
    let err = Databases::connect(&urls, 1).await.expect_err("not a URL");
    assert!(matches!(err, StorageError::BadUrl { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with("Orders database URL") && text.contains("postgres://"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);

    // A port where nothing listens: a connection error that names the database and the URL.
    let port = common::env::ports::free_port().unwrap();
    let err = common::storage::connect(
        common::storage::Store::Payments,
        &format!("postgres://lab:pw@127.0.0.1:{port}/payments"),
        1,
    )
    .await
    .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot connect to the Payments database") && text.contains("lab:***@"),
        "{text}"
    );
    assert!(!text.contains("pw@"), "password leaked: {text}");
    assert_eq!(text.lines().count(), 1);
}

/// The broker's topics, as its metadata lists them.
fn topics(bootstrap: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = client
        .fetch_metadata(None, std::time::Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

/// Sends `count` keyed records through an idempotent (`acks=all`) producer; every one must be
/// acknowledged within `within`.
async fn produce_all(bootstrap: &str, topic: &str, from: u32, count: u32, within: Duration) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let tuning = common::kafka_clients::ClientTuning::default();
    let producer: FutureProducer =
        common::kafka_clients::idempotent_producer_config(bootstrap, &tuning)
            .create()
            .expect("producer");
    for i in from..from + count {
        let key = format!("k{i}");
        let value = format!("v{i}");
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        producer
            .send(record, within)
            .await
            .unwrap_or_else(|(e, _)| panic!("record {i} not acknowledged: {e}"));
    }
}

/// The replicated topology: five PostgreSQL clusters (one per owner, so a crash hits one
/// store) and three brokers whose topics keep three replicas; killing the node that leads a
/// topic loses no acknowledged record and writes go on after the election; a crashed owner's
/// cluster comes back with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_topology_survives_a_leader_kill_and_a_database_crash() {
    use common::env::Topology;
    use common::storage::Store;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let _guard = OWN_ENV.lock().await;
    let dir = fresh_dir("replicated");
    let mut env = LabEnv::start(&LabEnvConfig::with_topology(&dir, Topology::Replicated))
        .await
        .expect("replicated environment starts");
    assert_eq!(env.kafka.brokers().len(), 3);
    assert_eq!(env.postgres.clusters().len(), 5);
    let urls = env.database_urls();
    let ports: std::collections::BTreeSet<u16> = Store::ALL
        .iter()
        .map(|s| env.postgres.cluster_of(*s).port())
        .collect();
    assert_eq!(ports.len(), 5, "one postmaster per owner");
    assert!(urls
        .payments
        .contains(&env.postgres.cluster_of(Store::Payments).port().to_string()));
    assert_usable(&env).await;

    // A topic takes the brokers' default of three replicas.
    let bootstrap = env.bootstrap_servers();
    create_topics(&bootstrap, &["replicated-probe"], 3)
        .await
        .expect("topic created");
    let replicas = {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &b)
                .create()
                .unwrap();
            let m = c
                .fetch_metadata(Some("replicated-probe"), Duration::from_secs(10))
                .unwrap();
            m.topics()[0]
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    assert_eq!(replicas, vec![3, 3, 3], "every partition on three nodes");

    produce_all(
        &bootstrap,
        "replicated-probe",
        0,
        50,
        Duration::from_secs(30),
    )
    .await;
    let leader = env
        .kafka
        .leader_of("replicated-probe")
        .await
        .expect("a leader");
    env.kafka.broker_mut(leader).unwrap().kill();
    // acks=all with min.insync.replicas=2: the two nodes left take every write.
    produce_all(
        &bootstrap,
        "replicated-probe",
        50,
        50,
        Duration::from_secs(60),
    )
    .await;
    let new_leader = env
        .kafka
        .leader_of("replicated-probe")
        .await
        .expect("a leader");
    assert_ne!(new_leader, leader, "leadership moved off the killed node");

    let consumer: BaseConsumer = common::kafka_clients::manual_commit_consumer_config(
        &bootstrap,
        "replicated-probe-reader",
        &common::kafka_clients::ClientTuning::default(),
    )
    .create()
    .unwrap();
    consumer.subscribe(&["replicated-probe"]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 100 && std::time::Instant::now() < deadline {
        let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(500)));
        if let Some(Ok(m)) = polled {
            seen.insert(String::from_utf8_lossy(m.key().unwrap()).into_owned());
        }
    }
    assert_eq!(seen.len(), 100, "every acknowledged record is read back");

    env.kafka
        .broker_mut(leader)
        .unwrap()
        .restart()
        .await
        .expect("the killed node rejoins");

    // A crash of the payments cluster leaves the others serving; it recovers its rows.
    let dbs = Databases::connect(&urls, 2).await.unwrap();
    dbs.migrate().await.unwrap();
    // As root the cluster's data lives outside the run directory and outlives it: start clean.
    sqlx::query("DROP TABLE IF EXISTS crash_probe")
        .execute(&dbs.payments)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE crash_probe (id int)")
        .execute(&dbs.payments)
        .await
        .unwrap();
    sqlx::query("INSERT INTO crash_probe VALUES (1)")
        .execute(&dbs.payments)
        .await
        .unwrap();
    drop(dbs);
    env.postgres.cluster_of_mut(Store::Payments).kill();
    let orders = sqlx::PgPool::connect(&urls.orders).await.unwrap();
    sqlx::query("SELECT 1")
        .execute(&orders)
        .await
        .expect("orders unaffected");
    env.postgres
        .cluster_of_mut(Store::Payments)
        .restart()
        .await
        .expect("payments cluster restarts");
    let payments = sqlx::PgPool::connect(&urls.payments).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM crash_probe")
        .fetch_one(&payments)
        .await
        .unwrap();
    assert_eq!(n, 1, "the committed row survived the crash");
    payments.close().await;
    orders.close().await;
    let dir_text = dir.display().to_string();
    env.stop();
    assert_eq!(processes_mentioning(&dir_text), Vec::<i32>::new());
}
