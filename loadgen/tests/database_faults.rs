//! A service's own PostgreSQL crashed or cut off, on the replicated topology (a cluster per
//! owner): the fault hits that one database, the protocol waits, votes NO or retries, and after
//! the heal every order begun before it finishes and the checker finds every invariant intact.
//!
//! Needs the protocol binaries next to the test's own directory (`cargo test --workspace`
//! builds them).

mod support;

use common::env::testing::test_run_dir;
use loadgen::run::environment::Lab;
use loadgen::scenario::{Protocol, Scenario};
use std::path::Path;
use support::DATASET;

const SCENARIO: &str = r#"
name = "database-faults-test"
seed = 13
protocols = ["twopc", "saga-choreographed"]
topology = "replicated"
# Properties, not speed: a debug build on a busy machine may take seconds per order.
deadline_ms = 5000
[load]
mode = "open"
arrivals = "constant"
rate = 10.0
duration_s = 30
broker_warmup_s = 0
[[faults]]
kind = "crash"
target = "payment_db"
at_s = 3
duration_s = 4
[[faults]]
kind = "partition"
target = "inventory_db"
at_s = 11
duration_s = 4
[[faults]]
kind = "crash"
target = "coordinator_db"
at_s = 19
duration_s = 3
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_or_cut_off_database_stalls_one_service_and_everything_finishes_after_it() {
    let scenario = Scenario::parse(
        &format!("{SCENARIO}\n{DATASET}"),
        Path::new("database-faults-test.toml"),
    )
    .expect("the test scenario is valid");
    let run_dir = test_run_dir("loadgen-database-faults");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut lab = Lab::start(&run_dir, scenario.topology, true)
        .await
        .expect("the replicated environment starts");
    let logs = run_dir.join("logs");
    for protocol in [Protocol::Twopc, Protocol::SagaChoreographed] {
        let run = support::measure_checked(&mut lab, &scenario, protocol, &logs).await;
        let [payment_crash, inventory_cut, coordinator_crash] = &run.faults[..] else {
            panic!("three fault records")
        };
        assert!(
            payment_crash
                .note
                .contains("SIGKILL the postgres-payments cluster"),
            "{payment_crash:?}"
        );
        assert!(
            inventory_cut.note.contains("inventory→inventory_db"),
            "{inventory_cut:?}"
        );
        let mut applied = vec![payment_crash, inventory_cut];
        if protocol == Protocol::Twopc {
            applied.push(coordinator_crash);
        } else {
            assert!(
                !coordinator_crash.applies,
                "choreography has no coordinator: {coordinator_crash:?}"
            );
        }
        support::assert_applied_and_settled(&applied);
        let committed_after: u64 = run
            .timeline
            .iter()
            .filter(|b| b.second >= 24)
            .map(|b| b.committed)
            .sum();
        assert!(
            committed_after > 0,
            "{protocol:?} commits after the faults: {:?}",
            run.timeline
        );
    }
    lab.stop();
}
