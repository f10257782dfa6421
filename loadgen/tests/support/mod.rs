//! What the loadgen integration tests share.

use std::path::{Path, PathBuf};

/// `target/<profile>/`, where `cargo test --workspace` puts every package's binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps")
        .to_path_buf();
    for program in [
        "coordinator",
        "participant",
        "saga-service",
        "saga-orchestrator",
    ] {
        assert!(
            dir.join(program).is_file(),
            "{} is missing: run `cargo build --workspace --bins` (or `cargo test --workspace`) first",
            dir.join(program).display()
        );
    }
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
