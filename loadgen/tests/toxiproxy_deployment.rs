//! Faults in a deployment through the real Toxiproxy: the deployment file names Toxiproxy's API
//! (with a password), one proxy per link between each 2PC service and its database, and command
//! templates for a role's crash; `compare --deployment` partitions, delays, disables and resets
//! those proxies and runs the templates at the scheduled seconds, and the checker finds every
//! invariant intact. No password of the file (Toxiproxy's, the databases') reaches the results
//! or the logs.
//!
//! Needs the protocol binaries next to the test's own directory (`cargo test --workspace`
//! builds them) and the Toxiproxy server (`bash scripts/setup.sh` builds it).

mod support;

use common::env::testing::test_run_dir;
use common::env::toxiproxy::ToxiproxyServer;
use common::env::{LabEnv, LabEnvConfig};
use common::storage::Store;
use loadgen::run::faults::toxiproxy::Toxiproxy;
use std::net::SocketAddr;
use std::path::Path;
use support::DATASET;

const SECRET: &str = "hunter2-s3cret";

fn scenario_text() -> String {
    format!(
        r#"
name = "toxiproxy-deployment-test"
seed = 9
protocols = ["twopc"]
deadline_ms = 5000
[load]
mode = "open"
arrivals = "constant"
rate = 10.0
duration_s = 24
warmup_s = 1
[[faults]]
kind = "partition"
target = "payment_db"
at_s = 2
duration_s = 3
[[faults]]
kind = "delay"
target = "inventory_db"
at_s = 7
duration_s = 2
latency_ms = 100
jitter_ms = 20
[[faults]]
kind = "crash"
target = "order_db"
at_s = 11
duration_s = 2
[[faults]]
kind = "crash"
target = "order"
at_s = 15
duration_s = 1
[[faults]]
kind = "reset"
target = "coordinator_db"
at_s = 18
duration_s = 1
{DATASET}"#
    )
}

/// Every file under `dir`, as text where it is text.
fn texts_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(texts_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_in_a_deployment_go_through_toxiproxy_and_the_command_templates() {
    support::bin_dir();
    let dir = test_run_dir("loadgen-toxiproxy-deployment");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let env = LabEnv::start(&LabEnvConfig::new(dir.join("env")))
        .await
        .expect("the environment starts");
    let server = ToxiproxyServer::start(&dir)
        .await
        .expect("toxiproxy starts");
    let port = server.port();
    let api = Toxiproxy::new(&server.api_url()).unwrap();
    let direct = env.postgres.recreate_databases("toxi_").await.unwrap();
    let probe = loadgen::run::probe::ProbeTargets::local(&env)
        .await
        .unwrap();

    // The services' databases behind Toxiproxy, with a password in every URL (the lab's
    // PostgreSQL trusts loopback, so it is never checked, only carried).
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let with_password = |url: &str| url.replacen("://lab@", &format!("://lab:{SECRET}@"), 1);
    let mut databases = Vec::new();
    let mut links = String::new();
    for (store, role) in [
        (Store::Orders, "order"),
        (Store::Payments, "payment"),
        (Store::Inventory, "inventory"),
        (Store::Coordinator, "coordinator"),
    ] {
        let url = direct.get(store);
        let upstream = format!("127.0.0.1:{}", env.postgres.cluster_of(store).port());
        let proxy = format!("{role}_db");
        let listen = api.create_proxy(&proxy, any, &upstream).await.unwrap();
        let proxied = url.replacen(&upstream, &listen.to_string(), 1);
        assert_ne!(&proxied, url);
        databases.push((store, with_password(&proxied)));
        links += &format!("  {{ proxy = \"{proxy}\", ends = [\"{role}\", \"{role}_db\"] }},\n");
    }
    databases.push((Store::Orchestrator, with_password(&direct.orchestrator)));
    let marker = dir.join("order-commands.txt");
    let mut file = format!(
        "[probe]\ndatabase = \"{}\"\n\n[faults]\ntoxiproxy = \"http://lab:{SECRET}@127.0.0.1:{port}\"\n\n\
         [twopc]\nstart = \"here\"\nlinks = [\n{links}]\n\n\
         [twopc.commands.order]\ncrash = \"echo crash >> {m}\"\nrestart = \"echo restart >> {m}\"\n\n\
         [twopc.databases]\n",
        with_password(&probe.database_url),
        m = marker.display()
    );
    for (store, url) in &databases {
        file += &format!("{} = \"{url}\"\n", store.name());
    }
    let deployment = dir.join("deploy.toml");
    std::fs::write(&deployment, &file).unwrap();
    let scenario = dir.join("toxiproxy-deployment-test.toml");
    std::fs::write(&scenario, scenario_text()).unwrap();

    let args = support::deployment_args(&dir, &scenario, &deployment);
    let (_report_dir, summary) =
        loadgen::run::lab::compare(&args, None, "loadgen compare (toxiproxy test)".into())
            .await
            .unwrap_or_else(|e| panic!("compare runs with faults through toxiproxy: {e}\n{file}"));
    let run = &summary.runs[0];
    println!("faults: {:#?}", run.faults);
    assert!(run.check.is_clean(), "{:?}", run.check.describe());
    let [partition, delay, down, crash, reset] = &run.faults[..] else {
        panic!("five fault records: {:?}", run.faults)
    };
    support::assert_applied_and_settled(&[partition, delay, down, crash, reset]);
    assert!(
        partition.note.contains("txlab_partition on payment_db"),
        "{partition:?}"
    );
    assert!(
        delay.note.contains("txlab_latency on inventory_db"),
        "{delay:?}"
    );
    assert!(down.note.contains("order_db disabled"), "{down:?}");
    assert!(
        reset.note.contains("txlab_reset_peer on coordinator_db"),
        "{reset:?}"
    );
    assert!(crash.note.contains("ran `echo crash"), "{crash:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "crash\nrestart\n",
        "the crash template, then the restart template"
    );
    assert!(
        partition.availability_in_window.is_some_and(|a| a < 1.0),
        "payment cut from its database: no order can commit in time throughout: {partition:?}"
    );
    assert!(run.outcomes["COMMITTED"] > 50, "{:?}", run.outcomes);

    for (path, text) in texts_under(&dir.join("results"))
        .into_iter()
        .chain(texts_under(&dir.join("driver")))
    {
        assert!(!text.contains(SECRET), "the password is in {path}");
    }
    drop(server);
    env.stop();
}
