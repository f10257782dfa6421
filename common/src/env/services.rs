//! The lab's own protocol processes (coordinator, participants, orchestrator, saga services) run
//! as children: a crash is a real SIGKILL and a restart recovers from the database alone.

use super::process::{ManagedChild, StopPolicy};
use super::EnvError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How to start one service process.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Unique within a run (e.g. "participant-payment"); names the log file.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The address it serves on; it counts as ready once this accepts connections.
    pub listen: SocketAddr,
}

/// A running service, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct ServiceProcess {
    spec: ServiceSpec,
    child: ManagedChild,
}

impl ServiceProcess {
    /// Starts the service and waits until its port accepts connections.
    pub async fn start(
        spec: ServiceSpec,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<ServiceProcess, EnvError> {
        std::fs::create_dir_all(log_dir).map_err(|source| EnvError::Io {
            what: "creating",
            path: log_dir.into(),
            source,
        })?;
        let log = log_dir.join(format!("{}.log", spec.name));
        let child = spawn(&spec, &log)?;
        let mut service = ServiceProcess { spec, child };
        service.wait_ready(timeout).await?;
        Ok(service)
    }

    /// Starts the same service again — after a crash, say — appending to the same log, and
    /// waits until it serves. A still-running process is killed first.
    pub async fn restart(&mut self, timeout: Duration) -> Result<(), EnvError> {
        if self.child.is_running() {
            self.child.kill();
        }
        let log = self.child.log_path().to_path_buf();
        self.child = spawn(&self.spec, &log)?;
        self.wait_ready(timeout).await
    }

    pub fn spec(&self) -> &ServiceSpec {
        &self.spec
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Waits for the process to exit by itself (e.g. at an armed fail point).
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.child.is_running() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A crash: SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// A stall: SIGSTOP, sockets left open (see [`ManagedChild::pause`]).
    pub fn pause(&mut self) {
        self.child.pause();
    }

    /// SIGCONT after [`ServiceProcess::pause`].
    pub fn resume(&mut self) {
        self.child.resume();
    }

    /// A polite stop (SIGTERM), then SIGKILL after the grace period.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    pub fn log_path(&self) -> std::path::PathBuf {
        self.child.log_path().to_path_buf()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), EnvError> {
        let listen = self.spec.listen;
        let accepts = || async move { tokio::net::TcpStream::connect(listen).await.is_ok() };
        let every = Duration::from_millis(20);
        self.child
            .wait_ready(
                "a lab service",
                Some(&self.spec.name),
                timeout,
                every,
                accepts,
            )
            .await
    }
}

/// Spawns the service's process, its output appended to `log`.
fn spawn(spec: &ServiceSpec, log: &Path) -> Result<ManagedChild, EnvError> {
    let mut command = Command::new(&spec.program);
    command.args(&spec.args);
    for (key, value) in &spec.env {
        command.env(key, value);
    }
    let stop = StopPolicy {
        signal: libc::SIGTERM,
        grace: Duration::from_secs(10),
    };
    ManagedChild::spawn(&spec.name, command, log, stop).map_err(|source| EnvError::Spawn {
        what: "a lab service",
        source,
    })
}
