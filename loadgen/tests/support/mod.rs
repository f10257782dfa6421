//! What the loadgen integration tests share. Each test binary uses a part of it.
#![allow(dead_code)]

use loadgen::cli::{CompareArgs, EnvArgs, TargetArgs};
use loadgen::report::summary::{ProtocolRun, Summary};
use loadgen::run::environment::Lab;
use loadgen::run::experiment::measure;
use loadgen::run::faults::injector::FaultRecord;
use loadgen::run::probe::Floors;
use loadgen::scenario::{Protocol, Scenario};
use std::path::{Path, PathBuf};

/// `target/<profile>/`, where `cargo test --workspace` puts every package's binaries.
pub fn bin_dir() -> PathBuf {
    let dir = loadgen::run::lab::bin_dir().expect("the test knows its path");
    let missing = loadgen::run::lab::missing_binaries(&dir);
    assert!(
        missing.is_empty(),
        "{missing:?} missing: run `cargo build --workspace --bins` (or `cargo test --workspace`) first"
    );
    dir
}

/// A small data set with money and stock to spare, for test scenarios (TOML).
pub const DATASET: &str = r#"[dataset]
customers = 200
skus = 50
balance_cents = [500000, 900000]
stock = [5000, 9000]
price_cents = [100, 2000]
"#;

/// Runs `protocol` under `scenario` in `lab` (logs in `logs`), prints its fault records and
/// asserts the checker found nothing.
pub async fn measure_checked(
    lab: &mut Lab,
    scenario: &Scenario,
    protocol: Protocol,
    logs: &Path,
) -> ProtocolRun {
    let run = measure(
        lab,
        scenario,
        protocol,
        &Floors::default(),
        &bin_dir(),
        logs,
    )
    .await
    .unwrap_or_else(|e| panic!("the {protocol:?} run completes: {e}"))
    .run;
    println!("{protocol:?} faults: {:#?}", run.faults);
    assert!(
        run.check.is_clean(),
        "{protocol:?}: {:?}",
        run.check.describe()
    );
    run
}

/// Every fault applied, healed without error, and everything begun before its heal finished.
pub fn assert_applied_and_settled(faults: &[&FaultRecord]) {
    for fault in faults {
        assert!(fault.applies && fault.error.is_none(), "{fault:?}");
        assert!(
            fault.settled_after_heal_s.is_some(),
            "everything begun before the heal is finished within the settle limit: {fault:?}"
        );
    }
}

/// `compare` of `scenario` against the deployment file `deployment`, results under `dir`.
pub fn deployment_args(dir: &Path, scenario: &Path, deployment: &Path) -> CompareArgs {
    CompareArgs {
        scenario: scenario.display().to_string(),
        seed: None,
        results_dir: dir.join("results"),
        load: Default::default(),
        env: EnvArgs {
            run_dir: dir.join("driver"),
            topology: None,
        },
        target: TargetArgs {
            deployment: Some(deployment.to_path_buf()),
        },
    }
}

/// Every protocol of a `compare`: no violation, more than `committed` orders committed, and
/// figures from each of its processes.
pub fn assert_every_protocol_clean(summary: &Summary, committed: u64) {
    for run in &summary.runs {
        let protocol = run.protocol.expect("a protocol's run");
        assert!(
            run.check.is_clean(),
            "{protocol:?}: {:?}",
            run.check.describe()
        );
        assert!(
            run.outcomes["COMMITTED"] > committed,
            "{protocol:?} committed orders: {:?}",
            run.outcomes
        );
        let processes = if protocol == Protocol::SagaChoreographed {
            3
        } else {
            4
        };
        assert_eq!(
            run.services.len(),
            processes,
            "{protocol:?}: every process gave its figures"
        );
    }
}
