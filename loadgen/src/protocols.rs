//! Starting a protocol's processes in the local environment, behind one face: the client API's
//! URL and the metrics endpoints. The load generator knows nothing else about a protocol.

use crate::scenario::{Protocol, Scenario};
use common::env::{EnvError, LabEnv};
use common::storage::DatabaseUrls;
use std::path::Path;
use std::time::Duration;

/// A protocol's running processes; dropping it stops them.
pub enum Running {
    Twopc(twopc::deployment::Deployment),
}

impl Running {
    /// Starts `protocol` on `databases`, its binaries taken from `bin_dir`, logs in `log_dir`.
    pub async fn start(
        protocol: Protocol,
        scenario: &Scenario,
        _env: &LabEnv,
        databases: DatabaseUrls,
        bin_dir: &Path,
        log_dir: &Path,
    ) -> Result<Running, EnvError> {
        match protocol {
            Protocol::Twopc => {
                let mut config = twopc::deployment::DeploymentConfig::new(bin_dir, log_dir, databases);
                config.prepare_timeout = Duration::from_millis(scenario.twopc.prepare_timeout_ms);
                config.prepare_order = scenario.twopc.prepare_order;
                config.default_deadline = Duration::from_millis(scenario.deadline_ms);
                Ok(Running::Twopc(twopc::deployment::Deployment::start(config).await?))
            }
            Protocol::SagaOrchestrated | Protocol::SagaChoreographed => Err(EnvError::Io {
                what: "starting the saga processes",
                path: bin_dir.into(),
                source: std::io::Error::other(format!("{} is not wired into the load generator yet", protocol.name())),
            }),
        }
    }

    /// The `OrderApi` endpoint.
    pub fn url(&self) -> String {
        match self {
            Running::Twopc(d) => d.url(),
        }
    }

    /// Every process's metrics endpoint.
    pub fn metrics_urls(&self) -> Vec<String> {
        match self {
            Running::Twopc(d) => {
                let mut urls = vec![d.url()];
                urls.extend(twopc::branch::ServiceKind::ALL.iter().map(|k| d.participant_url(*k)));
                urls
            }
        }
    }
}
