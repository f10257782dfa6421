//! A saga deployment on this machine — the three saga services and, when orchestrated, the
//! orchestrator — each its own process, all on a topic prefix of their own so runs never see each
//! other's messages. The load generator starts sagas through this, as it starts 2PC through
//! `twopc::deployment`.

use crate::config::AdmissionPolicy;
use crate::Mode;
use clap::ValueEnum;
use common::env::ports::free_port;
use common::env::services::{ServiceProcess, ServiceSpec};
use common::env::EnvError;
use common::kafka_clients::CONSUMER_ASSIGNED;
use common::metrics::pb::SnapshotRequest;
use common::metrics::MetricsClient;
use common::storage::{DatabaseUrls, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The running processes; stopped on drop (front first).
pub struct SagaDeployment {
    /// Every topic and consumer group of this deployment is named `<prefix>.…`.
    prefix: String,
    front: SocketAddr,
    metrics: Vec<SocketAddr>,
    processes: Vec<ServiceProcess>,
}

const SERVICES: [(&str, Store); 3] = [
    ("order", Store::Orders),
    ("payment", Store::Payments),
    ("inventory", Store::Inventory),
];

/// How long a fresh deployment's consumers may take to join their groups.
const CONSUMING_WITHIN: Duration = Duration::from_secs(60);

/// Whether the process at `addr` reports its consumer assigned (false if it cannot tell yet).
async fn consumer_assigned(addr: SocketAddr) -> bool {
    let Ok(mut client) = MetricsClient::connect(format!("http://{addr}")).await else {
        return false;
    };
    client
        .get_snapshot(SnapshotRequest { reset: false })
        .await
        .is_ok_and(|r| r.into_inner().counters.get(CONSUMER_ASSIGNED).copied() >= Some(1))
}

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
    /// `bootstrap` gives each process (`order`, `payment`, `inventory`, `orchestrator`) the
    /// broker address it must use: its own listener's fault proxy, or the broker itself.
    pub async fn start(
        mode: Mode,
        bin_dir: &Path,
        log_dir: &Path,
        databases: &DatabaseUrls,
        bootstrap: &dyn Fn(&str) -> String,
        step_timeout: Duration,
        admission: &AdmissionPolicy,
    ) -> Result<SagaDeployment, EnvError> {
        let prefix = format!("saga-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        // Every process gets the step timeout (the orchestrator's per step; choreography's order
        // service derives its saga deadline from it) and the admission limit (the front's).
        let kafka = |listen: SocketAddr, process: &str| {
            vec![
                "--listen".to_string(),
                listen.to_string(),
                "--bootstrap".into(),
                bootstrap(process),
                "--topic-prefix".into(),
                prefix.clone(),
                "--step-timeout-ms".into(),
                step_timeout.as_millis().to_string(),
                "--max-in-flight".into(),
                admission.max_in_flight.to_string(),
                "--admission-reserve-ms".into(),
                admission.reserve.as_millis().to_string(),
            ]
        };
        let mut deployment = SagaDeployment {
            prefix: prefix.clone(),
            front: port()?,
            metrics: Vec::new(),
            processes: Vec::new(),
        };
        for (name, store) in SERVICES {
            // Choreography's front door is the order service.
            let listen = if mode == Mode::Choreographed && name == "order" {
                deployment.front
            } else {
                port()?
            };
            let mut args = kafka(listen, name);
            args.extend([
                "--service".into(),
                name.into(),
                "--mode".into(),
                mode.to_possible_value()
                    .expect("every mode has a flag value")
                    .get_name()
                    .to_string(),
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
        if mode == Mode::Orchestrated {
            let listen = deployment.front;
            let mut args = kafka(listen, "orchestrator");
            args.extend(["--database-url".into(), databases.orchestrator.clone()]);
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
        deployment.wait_consuming(CONSUMING_WITHIN).await?;
        Ok(deployment)
    }

    /// Waits until every process's consumer holds its partitions: a process that listens but
    /// has not joined its group yet would count its first orders as unavailable.
    async fn wait_consuming(&mut self, within: Duration) -> Result<(), EnvError> {
        let started = std::time::Instant::now();
        for (process, addr) in self.processes.iter().zip(&self.metrics) {
            loop {
                if consumer_assigned(*addr).await {
                    break;
                }
                if started.elapsed() > within {
                    return Err(EnvError::NotReady {
                        what: "a saga process's consumer (no partition assignment)",
                        after: within,
                        log: process.log_path(),
                        tail: process.log_tail(20),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tracing::debug!(took = ?started.elapsed(), "every saga consumer holds its partitions");
        Ok(())
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

    /// The prefix of its topics and consumer groups.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The process serving as `name` (`order`, `payment`, `inventory`, `orchestrator`).
    pub fn process(&mut self, name: &str) -> Option<&mut ServiceProcess> {
        let wanted = format!("saga-{name}");
        self.processes.iter_mut().find(|p| p.spec().name == wanted)
    }

    /// Whether an orchestrator runs (and is the front door).
    pub fn is_orchestrated(&self) -> bool {
        self.processes
            .iter()
            .any(|p| p.spec().name == "saga-orchestrator")
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
