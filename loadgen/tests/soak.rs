//! `loadgen soak` end to end: randomized fault schedules drawn from seeds, each run under every
//! protocol on one environment, the checker after each, and the summary it writes.
//!
//! Needs the protocol binaries next to the test's own directory (`cargo test --workspace`
//! builds them).

mod support;

use common::env::testing::test_run_dir;
use loadgen::cli::{EnvArgs, SoakArgs};
use loadgen::scenario::Protocol;
use support::{bin_dir, DATASET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_runs_drawn_schedules_under_every_protocol_and_finds_nothing_broken() {
    bin_dir(); // fails with a clear message when the binaries are missing
    let run_dir = test_run_dir("loadgen-soak");
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let scenario = run_dir.join("soak-test.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
name = "soak-test"
seed = 1
protocols = ["twopc", "saga-orchestrated", "saga-choreographed"]
[load]
mode = "open"
arrivals = "poisson"
rate = 10.0
duration_s = 10
# Tests check properties, not speed: no waiting for the broker's JIT.
broker_warmup_s = 0
{DATASET}
[random_faults]
count = 1
duration_s = [1, 2]
first_at_s = 2
gap_s = 4
"#
        ),
    )
    .unwrap();
    let args = SoakArgs {
        scenario: scenario.display().to_string(),
        schedules: 2,
        seed: 40,
        protocols: Vec::new(),
        results_dir: run_dir.join("results"),
        env: EnvArgs {
            run_dir: run_dir.join("env"),
            topology: None,
        },
    };
    let (dir, summary) = loadgen::run::soak::run(&args, "soak test".into())
        .await
        .expect("the soak runs");
    print!("{}", summary.table());
    assert!(!summary.failed(), "{}", summary.markdown());
    assert_eq!(summary.rows.len(), 6, "two schedules under three protocols");
    for protocol in [
        Protocol::Twopc,
        Protocol::SagaOrchestrated,
        Protocol::SagaChoreographed,
    ] {
        let totals = summary.totals(protocol);
        assert_eq!(totals.schedules, 2);
        assert!(
            totals.counts.orders > 100 && totals.counts.committed > 0,
            "{totals:?}"
        );
    }
    // Each schedule was drawn from its own seed, the same for every protocol.
    let faults_of = |seed: u64| -> Vec<Vec<String>> {
        summary
            .rows
            .iter()
            .filter(|r| r.seed == seed)
            .map(|r| r.faults.iter().map(|f| f.replace(" (n/a)", "")).collect())
            .collect()
    };
    for seed in [40, 41] {
        let per_protocol = faults_of(seed);
        assert_eq!(per_protocol.len(), 3);
        assert!(
            per_protocol.windows(2).all(|w| w[0] == w[1]),
            "{per_protocol:?}"
        );
    }
    let written: loadgen::run::soak::SoakSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    // (Availability is a float, which JSON may round in its last digit.)
    let key = |r: &loadgen::run::soak::SoakRow| {
        (
            r.seed,
            r.protocol,
            r.faults.clone(),
            r.counts.orders,
            r.counts.committed,
            r.counts.violations,
            r.counts.lost,
            r.counts.undecided,
        )
    };
    assert_eq!(
        written.rows.iter().map(key).collect::<Vec<_>>(),
        summary.rows.iter().map(key).collect::<Vec<_>>()
    );
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("| twopc | 2 |"));
}
