//! A saga deployment on this machine — the three saga services and, when orchestrated, the
//! orchestrator — each its own process, all on a topic prefix of their own so runs never see each
//! other's messages.

use common::env::ports::free_port;
use common::env::services::{ServiceProcess, ServiceSpec};
use common::env::EnvError;
use common::storage::{DatabaseUrls, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Orchestrated or choreographed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaMode {
    Orchestrated,
    Choreographed,
}

impl SagaMode {
    fn flag(self) -> &'static str {
        match self {
            SagaMode::Orchestrated => "orchestrated",
            SagaMode::Choreographed => "choreographed",
        }
    }
}

/// The running processes; stopped on drop (front first).
pub struct SagaDeployment {
    front: SocketAddr,
    metrics: Vec<SocketAddr>,
    processes: Vec<ServiceProcess>,
}

const SERVICES: [(&str, Store); 3] = [
    ("order", Store::Orders),
    ("payment", Store::Payments),
    ("inventory", Store::Inventory),
];

fn port() -> Result<SocketAddr, EnvError> {
    let port = free_port().map_err(|source| EnvError::Io {
        what: "finding a free port",
        path: "127.0.0.1".into(),
        source,
    })?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl SagaDeployment {
    /// Starts the services, then (orchestrated) the orchestrator; waits until each serves.
    pub async fn start(
        mode: SagaMode,
        bin_dir: &Path,
        log_dir: &Path,
        databases: &DatabaseUrls,
        bootstrap: &str,
        step_timeout: Duration,
    ) -> Result<SagaDeployment, EnvError> {
        let prefix = format!("saga-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let kafka = |listen: SocketAddr| {
            vec![
                "--listen".to_string(),
                listen.to_string(),
                "--bootstrap".into(),
                bootstrap.to_string(),
                "--topic-prefix".into(),
                prefix.clone(),
            ]
        };
        let mut deployment = SagaDeployment {
            front: port()?,
            metrics: Vec::new(),
            processes: Vec::new(),
        };
        for (name, store) in SERVICES {
            // Choreography's front door is the order service.
            let listen = if mode == SagaMode::Choreographed && name == "order" {
                deployment.front
            } else {
                port()?
            };
            let mut args = kafka(listen);
            args.extend([
                "--service".into(),
                name.into(),
                "--mode".into(),
                mode.flag().into(),
            ]);
            args.extend(["--database-url".into(), databases.get(store).to_string()]);
            deployment
                .spawn(
                    &format!("saga-{name}"),
                    bin_dir.join("saga-service"),
                    args,
                    listen,
                    log_dir,
                )
                .await?;
        }
        if mode == SagaMode::Orchestrated {
            let listen = deployment.front;
            let mut args = kafka(listen);
            args.extend(["--database-url".into(), databases.orchestrator.clone()]);
            args.extend([
                "--step-timeout-ms".into(),
                step_timeout.as_millis().to_string(),
            ]);
            deployment
                .spawn(
                    "saga-orchestrator",
                    bin_dir.join("saga-orchestrator"),
                    args,
                    listen,
                    log_dir,
                )
                .await?;
        }
        Ok(deployment)
    }

    async fn spawn(
        &mut self,
        name: &str,
        program: PathBuf,
        args: Vec<String>,
        listen: SocketAddr,
        log_dir: &Path,
    ) -> Result<(), EnvError> {
        if !program.is_file() {
            return Err(EnvError::Io {
                what: "finding the saga binary (build them with `cargo build --release --workspace --bins`)",
                path: program,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let spec = ServiceSpec {
            name: name.into(),
            program,
            args,
            env: Vec::new(),
            listen,
        };
        self.processes
            .push(ServiceProcess::start(spec, log_dir, Duration::from_secs(60)).await?);
        self.metrics.push(listen);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.front)
    }

    pub fn metrics_urls(&self) -> Vec<String> {
        self.metrics.iter().map(|a| format!("http://{a}")).collect()
    }
}

impl Drop for SagaDeployment {
    fn drop(&mut self) {
        // The front (last started) first: no new sagas while the services stop.
        while let Some(mut p) = self.processes.pop() {
            p.stop();
        }
    }
}
