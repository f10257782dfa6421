//! A Toxiproxy server (github.com/Shopify/toxiproxy) as a child of the lab, on a loopback port:
//! the fault backend that real deployments use, run here so that its client is tested against
//! the real server rather than a mock.

use super::kafka::cache_dir;
use super::ports::{free_port, LOOPBACK};
use super::process::{ManagedChild, StopPolicy};
use super::EnvError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the server may take to answer `GET /version` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running Toxiproxy server, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct ToxiproxyServer {
    child: ManagedChild,
    port: u16,
}

/// Where `scripts/setup.sh` puts the server binary.
pub fn server_binary() -> PathBuf {
    cache_dir().join("bin/toxiproxy-server")
}

impl ToxiproxyServer {
    /// Starts the server on a free loopback port, logging to `<run_dir>/logs/toxiproxy.log`,
    /// and waits until its API answers.
    pub async fn start(run_dir: &Path) -> Result<ToxiproxyServer, EnvError> {
        let binary = server_binary();
        if !binary.is_file() {
            return Err(EnvError::Spawn {
                what: "the Toxiproxy server (build it with `bash scripts/setup.sh`)",
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} does not exist", binary.display()),
                ),
            });
        }
        let logs = run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| EnvError::Io {
            what: "creating",
            path: logs.clone(),
            source,
        })?;
        let port = free_port().map_err(|source| EnvError::Io {
            what: "finding a free port",
            path: "127.0.0.1".into(),
            source,
        })?;
        let mut command = Command::new(&binary);
        command.args(["-host", &LOOPBACK.to_string(), "-port", &port.to_string()]);
        let stop = StopPolicy {
            signal: libc::SIGTERM,
            grace: Duration::from_secs(5),
        };
        let child = ManagedChild::spawn("toxiproxy", command, &logs.join("toxiproxy.log"), stop)
            .map_err(|source| EnvError::Spawn {
                what: "the Toxiproxy server",
                source,
            })?;
        let mut server = ToxiproxyServer { child, port };
        server.wait_ready().await?;
        tracing::info!(api = %server.api_url(), "toxiproxy ready");
        Ok(server)
    }

    /// The HTTP API's base URL, e.g. `http://127.0.0.1:18474`.
    pub fn api_url(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> &Path {
        self.child.log_path()
    }

    /// Stops the server now rather than at drop.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    async fn wait_ready(&mut self) -> Result<(), EnvError> {
        let port = self.port;
        let every = Duration::from_millis(50);
        self.child
            .wait_ready("the Toxiproxy server", None, READY_TIMEOUT, every, || {
                version_answers(port)
            })
            .await
    }
}

/// Whether `GET /version` answers 200: the port accepting connections is not enough, as the
/// listener can be up before the API routes are.
async fn version_answers(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect((LOOPBACK, port)).await?;
        let request = format!("GET /version HTTP/1.0\r\nHost: {LOOPBACK}:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(answer)) => {
            let status_line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
            String::from_utf8_lossy(status_line)
                .split_whitespace()
                .nth(1)
                == Some("200")
        }
        _ => false,
    }
}
