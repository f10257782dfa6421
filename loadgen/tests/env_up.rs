//! Deployed mode with "start them here", through the command a user runs: `loadgen env up
//! --topology replicated --print-deployment` starts a local environment in its own process and
//! prints its deployment file; `compare --deployment` knows nothing but that file, starts the
//! protocols' processes against it, and measures and checks them as usual. A wrong address in
//! the file is one line naming its entry, without the password; SIGTERM stops the environment.
//!
//! Needs the protocol binaries next to the test's own directory (`cargo test --workspace`
//! builds them).

mod support;

use common::env::ports::free_port;
use common::env::testing::test_run_dir;
use loadgen::run::deployed::Deployment;
use loadgen::scenario::Protocol;
use std::process::Stdio;
use std::time::Duration;
use support::DATASET;
use tokio::io::AsyncReadExt;

/// Starting three brokers and five clusters on a busy machine: generous.
const ENV_UP_LIMIT: Duration = Duration::from_secs(300);

fn scenario_text() -> String {
    format!(
        r#"
name = "env-up-test"
seed = 5
# Properties, not speed: a debug build on a busy machine may take seconds per saga.
deadline_ms = 10000
protocols = ["twopc", "saga-orchestrated", "saga-choreographed"]
[load]
mode = "open"
arrivals = "poisson"
rate = 20.0
duration_s = 4
warmup_s = 1
broker_warmup_s = 0
{DATASET}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_drives_what_env_up_printed_and_starts_the_protocols_here() {
    support::bin_dir();
    let dir = test_run_dir("loadgen-env-up");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let env_dir = dir.join("env");
    let stderr = std::fs::File::create(dir.join("env-up.stderr")).unwrap();
    let mut env_up = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "env",
            "up",
            "--topology",
            "replicated",
            "--print-deployment",
        ])
        .arg("--run-dir")
        .arg(&env_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("loadgen env up starts");
    let mut printed = String::new();
    let mut stdout = env_up.stdout.take().unwrap();
    tokio::time::timeout(ENV_UP_LIMIT, stdout.read_to_string(&mut printed))
        .await
        .expect("env up prints its deployment file and closes stdout in time")
        .expect("stdout reads");
    let deployment_path = dir.join("deploy.toml");
    std::fs::write(&deployment_path, &printed).unwrap();
    let deployment = Deployment::load(&deployment_path).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.join("env-up.stderr")).unwrap_or_default();
        panic!("{e}\nprinted:\n{printed}\nstderr:\n{log}")
    });
    let bootstrap = deployment.probe.kafka.clone().expect("the brokers");
    assert_eq!(
        bootstrap.split(',').count(),
        3,
        "three brokers: {bootstrap}"
    );
    let twopc = deployment.protocol(Protocol::Twopc).unwrap();
    assert!(twopc.started_here());
    let ports: std::collections::BTreeSet<&str> = common::storage::Store::ALL
        .iter()
        .map(|s| twopc.databases.get(*s).rsplit(':').next().unwrap())
        .collect();
    assert_eq!(ports.len(), 5, "a cluster per owner: {printed}");

    let scenario = dir.join("env-up-test.toml");
    std::fs::write(&scenario, scenario_text()).unwrap();
    let (report_dir, summary) = loadgen::run::lab::compare(
        &support::deployment_args(&dir, &scenario, &deployment_path),
        None,
        "loadgen compare (env up test)".into(),
    )
    .await
    .expect("compare runs against the printed deployment");
    assert_eq!(summary.runs.len(), 3);
    support::assert_every_protocol_clean(&summary, 20);
    assert!(summary.floors.kafka_hop_us > 0.0, "{:?}", summary.floors);
    let report = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(report.contains(&deployment_path.display().to_string()));

    // A wrong address: one line naming the entry, its password left out, nothing started.
    let closed = free_port().unwrap();
    let secret = "hunter2-s3cret";
    let orders = twopc.databases.orders.clone();
    let wrong = printed.replacen(
        &format!("orders = \"{orders}\""),
        &format!("orders = \"postgres://lab:{secret}@127.0.0.1:{closed}/twopc_orders\""),
        1,
    );
    assert_ne!(wrong, printed, "the entry was replaced");
    let wrong_path = dir.join("wrong.toml");
    std::fs::write(&wrong_path, wrong).unwrap();
    let err = loadgen::run::lab::compare(
        &support::deployment_args(&dir, &scenario, &wrong_path),
        Some(Protocol::Twopc),
        String::new(),
    )
    .await
    .expect_err("an unreachable database is refused")
    .to_string();
    assert!(
        err.contains("twopc.databases.orders") && err.contains(&format!("127.0.0.1:{closed}")),
        "{err}"
    );
    assert!(!err.contains(secret), "the password leaked: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    // SIGTERM: the environment stops, its brokers with it.
    let pid = env_up.id().expect("still running") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(120), env_up.wait())
        .await
        .expect("env up stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let first_broker = bootstrap.split(',').next().unwrap().to_string();
    assert!(
        tokio::net::TcpStream::connect(&first_broker).await.is_err(),
        "the broker at {first_broker} is stopped"
    );
}
