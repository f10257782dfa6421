//! A private PostgreSQL cluster owned by the lab: initdb in a lab-owned directory, `postgres`
//! started as a child on a loopback port with durable commits (`fsync=on`) and room for prepared
//! transactions, one database per service.

use super::process::{log_tail, run_to_completion, stop_leftover, ManagedChild, StopPolicy};
use super::{ports, EnvError};
use crate::storage::{quote_literal, DatabaseUrls, Store};
use sqlx::{Connection, Executor, PgConnection};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The cluster's superuser; authentication is `trust` on 127.0.0.1 only.
pub const LAB_USER: &str = "lab";

#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// A fixed port, or `None` for a free one.
    pub port: Option<u16>,
    /// Enough for every service's pool in a run (the load generator sizes them).
    pub max_connections: u32,
    /// Must exceed the number of 2PC branches that can be prepared at once.
    pub max_prepared_transactions: u32,
    /// Where initdb and postgres live; `None` searches the usual Debian places.
    pub bin_dir: Option<PathBuf>,
    /// How long to wait for the server to accept connections.
    pub ready_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            port: None,
            max_connections: 400,
            max_prepared_transactions: 256,
            bin_dir: None,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A running cluster; stopped (fast shutdown) on drop.
#[derive(Debug)]
pub struct PostgresCluster {
    /// "postgres", or "postgres-<store>" for one owner's cluster: names its log and data.
    name: String,
    /// The stores whose databases it holds.
    stores: Vec<Store>,
    port: u16,
    data_dir: PathBuf,
    command: ServerCommand,
    server: ManagedChild,
}

/// How the postmaster is started, kept so a crashed one comes back the same way.
#[derive(Clone, Debug)]
struct ServerCommand {
    bin: PathBuf,
    settings: Vec<(&'static str, String)>,
    owner: Option<(u32, u32)>,
    log: PathBuf,
    ready_timeout: Duration,
}

impl ServerCommand {
    fn spawn(&self, name: &str, data_dir: &Path) -> Result<ManagedChild, EnvError> {
        let mut command = Command::new(self.bin.join("postgres"));
        command.arg("-D").arg(data_dir);
        for (key, value) in &self.settings {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let stop = StopPolicy {
            signal: libc::SIGINT,
            grace: Duration::from_secs(30),
        };
        ManagedChild::spawn(name, command, &self.log, stop).map_err(|source| EnvError::Spawn {
            what: "postgres",
            source,
        })
    }
}

impl PostgresCluster {
    /// Creates the cluster on first use (warm starts reuse its data), stops a server an earlier lab
    /// left on the same data, starts it, and creates the service databases.
    pub async fn start(
        config: &PostgresConfig,
        run_dir: &Path,
    ) -> Result<PostgresCluster, EnvError> {
        Self::start_for(config, run_dir, None).await
    }

    /// Like `start`; with `Some(store)`, the cluster of that owner alone (its own data
    /// directory, log and port), holding only that store's databases.
    pub async fn start_for(
        config: &PostgresConfig,
        run_dir: &Path,
        store: Option<Store>,
    ) -> Result<PostgresCluster, EnvError> {
        let bin = Self::preflight(config)?;
        let (name, stores) = match store {
            None => ("postgres".to_string(), Store::ALL.to_vec()),
            Some(store) => (format!("postgres-{}", store.name()), vec![store]),
        };
        let requested = if store.is_none() { config.port } else { None };
        let port = ports::choose_port(requested, "PostgreSQL")?;
        let logs = run_dir.join("logs");
        let owner = unprivileged_owner()?;
        let data_dir = data_dir(run_dir, store)?;
        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(
                &bin,
                &data_dir,
                owner,
                &logs.join(format!("initdb-{name}.log")),
            )?;
        }
        stop_stale_server(&data_dir);

        let command = ServerCommand {
            bin,
            settings: server_settings(config, port),
            owner,
            log: logs.join(format!("{name}.log")),
            ready_timeout: config.ready_timeout,
        };
        let server = command.spawn(&name, &data_dir)?;
        let mut cluster = PostgresCluster {
            name,
            stores,
            port,
            data_dir,
            command,
            server,
        };
        cluster.wait_ready(config.ready_timeout).await?;
        cluster.create_databases("").await?;
        Ok(cluster)
    }

    /// Starts the postmaster again on the same data and port (after [`PostgresCluster::kill`])
    /// and waits until it accepts connections: crash recovery replays its WAL, prepared
    /// transactions included. A still-running postmaster is killed first.
    pub async fn restart(&mut self) -> Result<(), EnvError> {
        if self.server.is_running() {
            self.server.kill();
        }
        // A killed postmaster's backends notice their parent is gone and exit; the new one
        // refuses to start while they hold the shared memory, so it is tried until ready.
        let started = Instant::now();
        loop {
            self.server = self.command.spawn(&self.name, &self.data_dir)?;
            match self.wait_ready(self.command.ready_timeout).await {
                Err(EnvError::Exited { .. }) if started.elapsed() < self.command.ready_timeout => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                done => return done,
            }
        }
    }

    /// "postgres", or "postgres-<store>" for one owner's cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stores whose databases this cluster holds.
    pub fn stores(&self) -> &[Store] {
        &self.stores
    }

    /// What must be true before anything starts: the server binaries exist. Returns their dir.
    pub fn preflight(config: &PostgresConfig) -> Result<PathBuf, EnvError> {
        find_bin_dir(config.bin_dir.as_deref())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// URL of one database of this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{LAB_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// URLs of the databases named `<prefix><service>`; the empty prefix is the lab's default set.
    pub fn urls(&self, prefix: &str) -> DatabaseUrls {
        DatabaseUrls::from_fn(|store| self.url(&format!("{prefix}{}", store.name())))
    }

    /// Creates the five service databases named `<prefix><service>` if they are missing, so
    /// that tests and runs can each have their own set in one cluster.
    pub async fn create_databases(&self, prefix: &str) -> Result<DatabaseUrls, EnvError> {
        let mut admin = self.admin_connection().await?;
        for store in self.stores.clone() {
            let name = format!("{prefix}{}", store.name());
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .map_err(|source| EnvError::Sql {
                        what: "looking up a database",
                        source,
                    })?;
            if !exists {
                admin
                    .execute(format!("CREATE DATABASE {}", quote_ident(&name)).as_str())
                    .await
                    .map_err(|source| EnvError::Sql {
                        what: "creating a database",
                        source,
                    })?;
            }
        }
        Ok(self.urls(prefix))
    }

    /// Drops and re-creates the databases named `<prefix><service>`: a clean slate.
    pub async fn recreate_databases(&self, prefix: &str) -> Result<DatabaseUrls, EnvError> {
        let mut admin = self.admin_connection().await?;
        for store in self.stores.clone() {
            let name = format!("{prefix}{}", store.name());
            // Prepared transactions pin a database; roll back any left in it.
            let gids: Vec<String> =
                sqlx::query_scalar("SELECT gid FROM pg_prepared_xacts WHERE database = $1")
                    .bind(&name)
                    .fetch_all(&mut admin)
                    .await
                    .map_err(|source| EnvError::Sql {
                        what: "listing prepared transactions",
                        source,
                    })?;
            if !gids.is_empty() {
                let url = self.url(&name);
                let mut conn =
                    PgConnection::connect(&url)
                        .await
                        .map_err(|source| EnvError::Sql {
                            what: "connecting",
                            source,
                        })?;
                for gid in gids {
                    conn.execute(format!("ROLLBACK PREPARED {}", quote_literal(&gid)).as_str())
                        .await
                        .map_err(|source| EnvError::Sql {
                            what: "rolling back a prepared transaction",
                            source,
                        })?;
                }
            }
            admin
                .execute(
                    format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&name)
                    )
                    .as_str(),
                )
                .await
                .map_err(|source| EnvError::Sql {
                    what: "dropping a database",
                    source,
                })?;
        }
        self.create_databases(prefix).await
    }

    /// A SIGKILL of the postmaster, for crash tests of the database itself.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Fast shutdown (SIGINT), waiting for it to finish.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    async fn admin_connection(&self) -> Result<PgConnection, EnvError> {
        PgConnection::connect(&self.url("postgres"))
            .await
            .map_err(|source| EnvError::Sql {
                what: "connecting to the lab cluster",
                source,
            })
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), EnvError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.server.exit_status() {
                return Err(EnvError::Exited {
                    what: "postgres",
                    status: status.to_string(),
                    log: self.server.log_path().to_path_buf(),
                    tail: self.server.log_tail(15),
                });
            }
            match PgConnection::connect(&self.url("postgres")).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    tracing::info!(port = self.port, elapsed = ?started.elapsed(), "PostgreSQL ready");
                    return Ok(());
                }
                Err(_) if started.elapsed() < timeout => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(_) => {
                    return Err(EnvError::NotReady {
                        what: "postgres",
                        after: timeout,
                        log: self.server.log_path().to_path_buf(),
                        tail: self.server.log_tail(15),
                    })
                }
            }
        }
    }
}

/// The server settings the lab's measurements depend on; they are passed on the command line so
/// that a reused data directory cannot carry different ones.
fn server_settings(config: &PostgresConfig, port: u16) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("port", port.to_string()),
        ("listen_addresses", "127.0.0.1".into()),
        ("unix_socket_directories", "".into()),
        ("fsync", "on".into()),
        ("synchronous_commit", "on".into()),
        ("max_connections", config.max_connections.to_string()),
        (
            "max_prepared_transactions",
            config.max_prepared_transactions.to_string(),
        ),
        ("shared_buffers", "256MB".into()),
        ("logging_collector", "off".into()),
        ("log_line_prefix", "%m [%p] %d ".into()),
        // Evidence for stalls inside a measured window: every autovacuum and autoanalyze run,
        // with its duration, lands in postgres.log beside the checkpoints (logged by default).
        ("log_autovacuum_min_duration", "0".into()),
    ];
    // Profiling only (docs/profile.md): per-statement calls and time, read with
    // scripts/pg-statements.sh while a run measures. Off by default: it costs CPU per statement.
    if std::env::var_os(STATEMENT_STATS_ENV).is_some_and(|v| v == "1") {
        settings.push(("shared_preload_libraries", "pg_stat_statements".into()));
        settings.push(("pg_stat_statements.track", "all".into()));
    }
    settings
}

/// Set to `1` to load `pg_stat_statements` into the lab's cluster (profiling, not measuring).
pub const STATEMENT_STATS_ENV: &str = "TXLAB_PG_STATEMENT_STATS";

fn init_cluster(
    bin: &Path,
    data_dir: &Path,
    owner: Option<(u32, u32)>,
    log: &Path,
) -> Result<(), EnvError> {
    let parent = data_dir.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(parent).map_err(|source| EnvError::Io {
        what: "creating",
        path: parent.into(),
        source,
    })?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(parent, Some(uid), Some(gid)).map_err(|source| EnvError::Io {
            what: "handing over",
            path: parent.into(),
            source,
        })?;
    }
    let mut command = Command::new(bin.join("initdb"));
    command.arg("-D").arg(data_dir).args([
        "-U",
        LAB_USER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
    ]);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    let status = run_to_completion(command, log).map_err(|source| EnvError::Spawn {
        what: "initdb",
        source,
    })?;
    if !status.success() {
        return Err(EnvError::Exited {
            what: "initdb",
            status: status.to_string(),
            log: log.into(),
            tail: log_tail(log, 15),
        });
    }
    Ok(())
}

/// A postmaster that an earlier lab left running on this data directory is shut down (SIGQUIT:
/// immediate), so that one data directory never has two owners.
fn stop_stale_server(data_dir: &Path) {
    let pid_file = data_dir.join("postmaster.pid");
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
    {
        stop_leftover(pid, &data_dir.display().to_string(), libc::SIGQUIT);
    }
}

/// PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` OS user (which
/// Debian's package creates).
fn unprivileged_owner() -> Result<Option<(u32, u32)>, EnvError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns a pointer into static storage or NULL; we copy the ids at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(EnvError::NoUnprivilegedUser);
    }
    // SAFETY: non-null, see above.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

/// The cluster's data directory for a run directory: inside it, except as root, where the
/// unprivileged owner may not be able to reach the run directory (e.g. under /root); then a fixed
/// place under /var/tmp named after the run directory, so warm starts still find it.
pub fn data_dir(run_dir: &Path, store: Option<Store>) -> Result<PathBuf, EnvError> {
    let leaf = match store {
        None => "data".to_string(),
        Some(store) => format!("data-{}", store.name()),
    };
    if unprivileged_owner()?.is_none() {
        return Ok(run_dir.join("pg").join(leaf));
    }
    std::fs::create_dir_all(run_dir).map_err(|source| EnvError::Io {
        what: "creating",
        path: run_dir.into(),
        source,
    })?;
    let canonical = run_dir.canonicalize().map_err(|source| EnvError::Io {
        what: "resolving",
        path: run_dir.into(),
        source,
    })?;
    let mut hash: u64 = 0xcbf29ce484222325; // FNV-1a: stable across Rust versions
    for byte in canonical.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
    }
    Ok(PathBuf::from(format!(
        "/var/tmp/txlab-pg/{hash:016x}/{leaf}"
    )))
}

fn find_bin_dir(configured: Option<&Path>) -> Result<PathBuf, EnvError> {
    let mut candidates: Vec<PathBuf> = configured.map(Path::to_path_buf).into_iter().collect();
    if configured.is_none() {
        if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev());
        }
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or_else(|| EnvError::PostgresMissing {
            searched: configured
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "/usr/lib/postgresql/*/bin".into()),
        })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
