//! What the loadgen integration tests share.

use std::path::PathBuf;

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
