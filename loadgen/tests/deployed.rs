//! The deployed environment (DESIGN §4), through the files a Docker user gets: every service
//! container of `docker-compose.yml` runs here as a process with its exact command (compose host
//! names and ports mapped to loopback and free ports), `scripts/compose-init.sql` creates the
//! databases, and `compare` drives them through `deploy/compose.toml` under the same mapping,
//! knowing nothing but those addresses. So the compose file, the deployment file and the
//! binaries' flags cannot drift apart unnoticed, though no Docker engine runs here.
//!
//! Needs the protocol binaries next to the test's own directory (`cargo test --workspace`
//! builds them).

mod support;

use common::env::ports::free_port;
use common::env::services::{ServiceProcess, ServiceSpec};
use common::env::testing::test_run_dir;
use common::env::{LabEnv, LabEnvConfig};
use sqlx::{Connection, Executor, PgConnection};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{bin_dir, DATASET};

/// The test scenario: every protocol, briefly, at a modest rate.
fn scenario_text() -> String {
    format!(
        r#"
name = "deployed-test"
seed = 11
# The test is about reaching the deployment, not its speed: a debug build on a busy machine
# takes seconds per orchestrated saga, and an order past the deadline would count as UNDECIDED.
deadline_ms = 10000
protocols = ["twopc", "saga-orchestrated", "saga-choreographed"]
[load]
mode = "open"
arrivals = "poisson"
rate = 25.0
duration_s = 4
warmup_s = 1
{DATASET}"#
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A service container of the compose file: its name, command and published container port.
struct Container {
    name: String,
    command: Vec<String>,
    port: u16,
}

/// Every service running the lab's image, in file order.
fn containers() -> Vec<Container> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut compose: serde_yaml::Value =
        serde_yaml::from_str(&text).expect("docker-compose.yml parses");
    let services = compose["services"]
        .as_mapping_mut()
        .expect("a services map");
    for (_, service) in services.iter_mut() {
        service.apply_merge().expect("its `<<:` merges resolve");
    }
    services
        .iter()
        .filter(|(_, s)| s["image"].as_str() == Some("txlab-services:latest"))
        .map(|(name, s)| {
            let command: Vec<String> = s["command"]
                .as_sequence()
                .expect("command is a list")
                .iter()
                .map(|a| a.as_str().expect("string arguments").to_string())
                .collect();
            let published = s["ports"][0].as_str().expect("one published port");
            let port = published.rsplit(':').next().unwrap().parse().unwrap();
            Container {
                name: name.as_str().unwrap().to_string(),
                command,
                port,
            }
        })
        .collect()
}

/// Compose's addresses, as reached here: a service's name and port, the databases, the broker.
struct Mapping {
    replacements: Vec<(String, String)>,
}

impl Mapping {
    fn apply(&self, text: &str) -> String {
        self.replacements
            .iter()
            .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_drives_the_compose_deployment_known_only_by_its_addresses() {
    let bins = bin_dir();
    let dir = test_run_dir("loadgen-deployed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let env = LabEnv::start(&LabEnvConfig::new(dir.join("env")))
        .await
        .expect("the environment starts");

    // The databases, as the postgres image's init script creates them.
    let mut admin = PgConnection::connect(&env.postgres.url("postgres"))
        .await
        .unwrap();
    let init = std::fs::read_to_string(repo().join("scripts/compose-init.sql")).unwrap();
    let databases: Vec<&str> = init
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CREATE DATABASE "))
        .map(|l| l.trim_end_matches(';').trim())
        .collect();
    assert_eq!(
        databases.len(),
        16,
        "three sets of five, and probe: {databases:?}"
    );
    for db in &databases {
        admin
            .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .unwrap();
    }

    let containers = containers();
    assert_eq!(
        containers.len(),
        11,
        "4 for 2PC, 4 orchestrated, 3 choreographed"
    );
    let ports: BTreeMap<u16, u16> = containers
        .iter()
        .map(|c| (c.port, free_port().unwrap()))
        .collect();
    let postgres = format!("127.0.0.1:{}", env.postgres.port());
    let mut replacements = vec![
        ("postgres:5432".to_string(), postgres.clone()),
        ("127.0.0.1:5432".to_string(), postgres),
        ("kafka:19092".to_string(), env.bootstrap_servers()),
        ("127.0.0.1:9092".to_string(), env.bootstrap_servers()),
    ];
    for c in &containers {
        let here = format!("127.0.0.1:{}", ports[&c.port]);
        replacements.push((format!("{}:{}", c.name, c.port), here.clone()));
        replacements.push((format!("0.0.0.0:{}", c.port), here.clone()));
        replacements.push((format!("127.0.0.1:{}", c.port), here));
    }
    let mapping = Mapping { replacements };

    // The operator's side: each container's command, as a process.
    let mut processes = Vec::new();
    for c in &containers {
        let args: Vec<String> = c.command[1..].iter().map(|a| mapping.apply(a)).collect();
        let listen: SocketAddr = format!("127.0.0.1:{}", ports[&c.port]).parse().unwrap();
        let spec = ServiceSpec {
            name: c.name.clone(),
            program: bins.join(&c.command[0]),
            args,
            env: Vec::new(),
            listen,
        };
        processes.push(
            ServiceProcess::start(spec, &dir.join("logs"), Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("{} starts with its compose command: {e}", c.name)),
        );
    }
    let deployment = dir.join("compose.toml");
    let file = std::fs::read_to_string(repo().join("deploy/compose.toml")).unwrap();
    std::fs::write(&deployment, mapping.apply(&file)).unwrap();
    let scenario = dir.join("deployed-test.toml");
    std::fs::write(&scenario, scenario_text()).unwrap();

    // The load generator's side: only the file.
    let args = |scenario: &Path| {
        let mut args = support::deployment_args(&dir, scenario, &deployment);
        args.env.run_dir = dir.join("unused-local-env");
        args
    };
    let (report_dir, summary) = loadgen::run::lab::compare(
        &args(&scenario),
        None,
        "loadgen compare (deployed test)".into(),
    )
    .await
    .expect("compare runs against the deployment");
    assert_eq!(summary.runs.len(), 3);
    support::assert_every_protocol_clean(&summary, 50);
    assert!(
        summary.runs[0]
            .services
            .iter()
            .any(|s| s.histograms.contains_key("lock_hold")),
        "the participants' lock-hold histograms come from the deployment"
    );
    let floors = &summary.floors;
    assert!(floors.grpc_against.contains("an empty order"), "{floors:?}");
    assert!(
        floors.grpc_round_trip_us > 0.0 && floors.pg_commit_us > 0.0 && floors.kafka_hop_us > 0.0,
        "{floors:?}"
    );
    let named = deployment.display().to_string();
    assert_eq!(
        summary.environment.deployment.as_deref(),
        Some(named.as_str())
    );
    let report = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(report.contains(&named), "the report names the deployment");
    assert!(
        !dir.join("unused-local-env").exists(),
        "no local environment was started"
    );

    // A scenario with faults is refused before anything runs: the lab owns no proxy here.
    let faults = dir.join("faults.toml");
    let with_faults = format!(
        "{}\n[[faults]]\nkind = \"partition\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 1\n",
        scenario_text()
    );
    std::fs::write(&faults, with_faults).unwrap();
    let refused = loadgen::run::lab::compare(&args(&faults), None, String::new())
        .await
        .expect_err("faults need the local environment")
        .to_string();
    assert!(
        refused.contains("faults") && refused.contains("local environment"),
        "{refused}"
    );

    // The deployment is the operator's: still serving after the lab is done with it.
    for p in &processes {
        assert!(
            tokio::net::TcpStream::connect(p.spec().listen)
                .await
                .is_ok(),
            "{} still serves",
            p.spec().name
        );
    }
    drop(processes);
    env.stop();
}
