//! Starting a protocol's processes in the local environment, behind one face: the client API's
//! URL and the metrics endpoints. The load generator knows nothing else about a protocol.

use crate::saga_deployment::{SagaDeployment, SagaMode};
use crate::scenario::{Protocol, Scenario};
use common::env::{EnvError, LabEnv};
use common::storage::DatabaseUrls;
use std::path::Path;
use std::time::Duration;

/// A protocol's running processes; dropping it stops them.
pub enum Running {
    Twopc(twopc::deployment::Deployment),
    Saga(SagaDeployment),
}

impl Running {
    /// Starts `protocol` on `databases`, its binaries taken from `bin_dir`, logs in `log_dir`.
    pub async fn start(
        protocol: Protocol,
        scenario: &Scenario,
        env: &LabEnv,
        databases: DatabaseUrls,
        bin_dir: &Path,
        log_dir: &Path,
    ) -> Result<Running, EnvError> {
        match protocol {
            Protocol::Twopc => {
                let mut config =
                    twopc::deployment::DeploymentConfig::new(bin_dir, log_dir, databases);
                config.prepare_timeout = Duration::from_millis(scenario.twopc.prepare_timeout_ms);
                config.prepare_order = scenario.twopc.prepare_order;
                config.default_deadline = Duration::from_millis(scenario.deadline_ms);
                Ok(Running::Twopc(
                    twopc::deployment::Deployment::start(config).await?,
                ))
            }
            Protocol::SagaOrchestrated | Protocol::SagaChoreographed => {
                let mode = if protocol == Protocol::SagaOrchestrated {
                    SagaMode::Orchestrated
                } else {
                    SagaMode::Choreographed
                };
                let step_timeout = Duration::from_millis(scenario.saga.step_timeout_ms);
                let bootstrap = env.bootstrap_servers();
                Ok(Running::Saga(
                    SagaDeployment::start(
                        mode,
                        bin_dir,
                        log_dir,
                        &databases,
                        &bootstrap,
                        step_timeout,
                    )
                    .await?,
                ))
            }
        }
    }

    /// The `OrderApi` endpoint.
    pub fn url(&self) -> String {
        match self {
            Running::Twopc(d) => d.url(),
            Running::Saga(d) => d.url(),
        }
    }

    /// Every process's metrics endpoint.
    pub fn metrics_urls(&self) -> Vec<String> {
        match self {
            Running::Twopc(d) => {
                let mut urls = vec![d.url()];
                urls.extend(
                    twopc::branch::ServiceKind::ALL
                        .iter()
                        .map(|k| d.participant_url(*k)),
                );
                urls
            }
            Running::Saga(d) => d.metrics_urls(),
        }
    }
}
