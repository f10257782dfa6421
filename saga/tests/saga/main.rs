//! Sagas end to end against a real Kafka broker and a real PostgreSQL, every service a child
//! process: the happy path and business failures in both modes, a mixed load checked by the
//! invariant checker, exactly-once effects under duplicates and replays, crashes, and the fronts'
//! admission limit.

mod crashes;
mod exactly_once;
mod flows;
mod hang_ups;
mod harness;
mod inspect;
mod overload;
mod stalls;
mod timeouts;
mod workload;

use common::env::testing::{fresh_databases, shared_env};
use harness::Deployment;
use saga::Mode;

/// A deployment of `mode` on fresh databases and topics in the shared environment, not started.
pub async fn deployment(name: &str, mode: Mode) -> Deployment {
    let env = shared_env().await;
    let (urls, dbs) = fresh_databases(name).await;
    let log_root = env.run_dir().join("saga-logs");
    Deployment::new(name, mode, urls, dbs, env.bootstrap_servers(), log_root).await
}
