//! The test harness: one real environment per test binary, started on first use, and a fresh,
//! migrated database set per test, so that tests run in parallel without seeing each other.

use super::{LabEnv, LabEnvConfig};
use crate::storage::{DatabaseUrls, Databases};
use std::path::PathBuf;
use tokio::sync::OnceCell;

static SHARED: OnceCell<LabEnv> = OnceCell::const_new();

/// The run directory for a test binary's environment: `$TXLAB_TEST_DIR/<binary>` (default under
/// the system temp dir). Wiped at first use; the processes die with the test binary.
pub fn test_run_dir(label: &str) -> PathBuf {
    let base = std::env::var_os("TXLAB_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("txlab-test"));
    base.join(label)
}

/// The shared environment of this test binary. Panics with the environment's own error message
/// if it cannot start: a test that needs PostgreSQL and Kafka fails loudly without them.
pub async fn shared_env() -> &'static LabEnv {
    SHARED
        .get_or_init(|| async {
            let exe = std::env::current_exe().ok();
            let label = exe
                .as_ref()
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "tests".into());
            let run_dir = test_run_dir(&label);
            let _ = std::fs::remove_dir_all(&run_dir);
            match LabEnv::start(&LabEnvConfig::new(&run_dir)).await {
                Ok(env) => env,
                Err(err) => panic!("the test environment did not start: {err}"),
            }
        })
        .await
}

/// A fresh, migrated set of the five databases named after `test`, in the shared environment.
pub async fn fresh_databases(test: &str) -> (DatabaseUrls, Databases) {
    let env = shared_env().await;
    let prefix: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let urls = env
        .postgres
        .recreate_databases(&format!("{prefix}_"))
        .await
        .expect("test databases are created");
    let dbs = Databases::connect(&urls, 8)
        .await
        .expect("test databases accept connections");
    dbs.migrate().await.expect("test databases migrate");
    (urls, dbs)
}

/// A topic name no other test uses.
pub fn unique_topic(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}
