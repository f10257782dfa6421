//! The replicated topology under broker faults: three brokers and a PostgreSQL cluster per
//! owner; a fault on the broker hits the node that leads most of the run's partitions, the
//! sagas go on after the election or the heal, and the checker finds every invariant intact.
//!
//! Needs the protocol binaries next to the test's own directory (`cargo test --workspace`
//! builds them).

mod support;

use common::env::testing::test_run_dir;
use common::env::Topology;
use loadgen::run::environment::Lab;
use loadgen::scenario::{Protocol, Scenario};
use std::path::Path;
use support::DATASET;

const SCENARIO: &str = r#"
name = "replicated-test"
seed = 11
protocols = ["saga-orchestrated", "twopc"]
topology = "replicated"
[load]
mode = "open"
arrivals = "constant"
rate = 10.0
duration_s = 30
# Tests check properties, not speed: no waiting for the brokers' JIT.
broker_warmup_s = 0
[[faults]]
kind = "crash"
target = "broker"
at_s = 4
duration_s = 3
[[faults]]
kind = "pause"
target = "broker"
at_s = 14
duration_s = 3
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_hit_the_leader_and_every_saga_still_finishes() {
    let scenario = Scenario::parse(
        &format!("{SCENARIO}\n{DATASET}"),
        Path::new("replicated-test.toml"),
    )
    .expect("the test scenario is valid");
    assert_eq!(scenario.topology, Topology::Replicated);
    let run_dir = test_run_dir("loadgen-replicated");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut lab = Lab::start(&run_dir, scenario.topology, true)
        .await
        .expect("the replicated environment starts");
    let logs = run_dir.join("logs");
    for protocol in [Protocol::SagaOrchestrated, Protocol::Twopc] {
        let run = support::measure_checked(&mut lab, &scenario, protocol, &logs).await;
        let [crash, pause] = &run.faults[..] else {
            panic!("two fault records")
        };
        if protocol == Protocol::Twopc {
            assert!(
                !crash.applies && !pause.applies,
                "2PC does not use the broker"
            );
            assert!(run.timeline.iter().any(|b| b.committed > 0));
            continue;
        }
        for fault in [crash, pause] {
            assert!(fault.applies && fault.error.is_none(), "{fault:?}");
            assert!(fault.note.contains("(leader)"), "{fault:?}");
            assert!(
                fault.broker_node.is_some_and(|n| (1..=3).contains(&n)),
                "{fault:?}"
            );
            assert!(
                fault.settled_after_heal_s.is_some(),
                "everything begun before the heal finishes: {fault:?}"
            );
        }
        assert!(crash.note.contains("SIGKILL") && pause.note.contains("SIGSTOP"));
        let last_heal = pause.healed_s.unwrap().ceil() as u64;
        let committed_after: u64 = run
            .timeline
            .iter()
            .filter(|b| b.second >= last_heal.min(29))
            .map(|b| b.committed)
            .sum();
        assert!(
            committed_after > 0,
            "sagas commit after the faults: {:?}",
            run.timeline
        );
    }
    lab.stop();
}
