//! A saga deployment for tests: a fresh database set, its own topics, and the orchestrator and
//! services as child processes that tests kill and restart. Waits are bounded and fail loudly.
// Shared by three test binaries (saga, broker_restart, measure); each uses only a part.
#![allow(dead_code)]

use common::api::{pb, OrderApiClient};
use common::datagen::{DataSet, DataSetSpec};
use common::env::services::{ServiceProcess, ServiceSpec};
use common::storage::{DatabaseUrls, Databases};
use hdrhistogram::Histogram;
use saga::config::{KafkaSettings, Topics};
use saga::Mode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const PARTITIONS: i32 = 8;

/// One process of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Orchestrator,
    Order,
    Payment,
    Inventory,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Order => "order",
            Role::Payment => "payment",
            Role::Inventory => "inventory",
        }
    }
}

/// Extra settings for one start of a process.
#[derive(Clone, Debug, Default)]
pub struct Start {
    /// `TXLAB_FAILPOINTS` for the process.
    pub failpoints: Option<String>,
    /// A consumer group suffix (a new one replays every topic from offset 0).
    pub group_suffix: Option<String>,
    pub publish_twice: bool,
    /// More flags for the process (e.g. the front's admission limit).
    pub args: Vec<String>,
}

pub struct Deployment {
    pub name: String,
    pub mode: Mode,
    pub urls: DatabaseUrls,
    pub dbs: Databases,
    pub data: DataSet,
    pub bootstrap: String,
    pub topics: Topics,
    pub step_timeout_ms: u64,
    pub max_attempts: u32,
    log_dir: PathBuf,
    pub addrs: HashMap<Role, SocketAddr>,
    procs: HashMap<Role, ServiceProcess>,
    starts: u32,
}

impl Deployment {
    /// Seeds `data` into `dbs`, creates the topics; starts nothing yet.
    pub async fn new(
        name: &str,
        mode: Mode,
        urls: DatabaseUrls,
        dbs: Databases,
        bootstrap: String,
        log_root: PathBuf,
    ) -> Deployment {
        let data = DataSet::generate(&DataSetSpec {
            seed: 7,
            customers: 500,
            skus: 20,
            balance_cents: (500_000, 1_000_000),
            stock: (20_000, 50_000),
            ..DataSetSpec::default()
        })
        .unwrap();
        dbs.reset_and_seed(&data).await.expect("seeding");
        let topics = Topics::new(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
        let mut kafka = KafkaSettings::new(bootstrap.clone(), topics.clone());
        kafka.partitions = PARTITIONS;
        saga::orchestrator::ensure_topics(&kafka)
            .await
            .expect("topics");
        let roles = match mode {
            Mode::Orchestrated => vec![
                Role::Orchestrator,
                Role::Order,
                Role::Payment,
                Role::Inventory,
            ],
            Mode::Choreographed => vec![Role::Order, Role::Payment, Role::Inventory],
        };
        let addrs = roles
            .into_iter()
            .map(|r| {
                (
                    r,
                    SocketAddr::from(([127, 0, 0, 1], common::env::ports::free_port().unwrap())),
                )
            })
            .collect();
        Deployment {
            name: name.to_string(),
            mode,
            urls,
            dbs,
            data,
            bootstrap,
            topics,
            step_timeout_ms: 5000,
            max_attempts: 3,
            log_dir: log_root.join(name),
            addrs,
            procs: HashMap::new(),
            starts: 0,
        }
    }

    pub fn roles(&self) -> Vec<Role> {
        let mut roles: Vec<Role> = self.addrs.keys().copied().collect();
        roles.sort();
        roles
    }

    /// Starts every process of the mode.
    pub async fn start_all(&mut self) {
        for role in self.roles() {
            self.start(role, Start::default()).await;
        }
    }

    pub async fn start(&mut self, role: Role, start: Start) {
        self.starts += 1;
        let addr = self.addrs[&role];
        let mut args = vec![
            "--listen".to_string(),
            addr.to_string(),
            "--bootstrap".into(),
            self.bootstrap.clone(),
            "--topic-prefix".into(),
            self.topics.prefix.clone(),
            "--partitions".into(),
            PARTITIONS.to_string(),
            "--db-connections".into(),
            "10".into(),
            "--lanes".into(),
            "8".into(),
            // The orchestrator's step timeouts; choreography's order service derives its saga
            // deadline from the same two.
            "--step-timeout-ms".into(),
            self.step_timeout_ms.to_string(),
            "--max-attempts".into(),
            self.max_attempts.to_string(),
        ];
        let program = match role {
            Role::Orchestrator => {
                args.extend(["--database-url".into(), self.urls.orchestrator.clone()]);
                env!("CARGO_BIN_EXE_saga-orchestrator")
            }
            service => {
                let url = match service {
                    Role::Order => &self.urls.orders,
                    Role::Payment => &self.urls.payments,
                    _ => &self.urls.inventory,
                };
                let mode = match self.mode {
                    Mode::Orchestrated => "orchestrated",
                    Mode::Choreographed => "choreographed",
                };
                args.extend([
                    "--database-url".into(),
                    url.clone(),
                    "--service".into(),
                    service.name().into(),
                ]);
                args.extend(["--mode".into(), mode.into()]);
                env!("CARGO_BIN_EXE_saga-service")
            }
        };
        if let Some(suffix) = &start.group_suffix {
            args.extend(["--group-suffix".into(), suffix.clone()]);
        }
        if start.publish_twice {
            args.push("--publish-twice".into());
        }
        args.extend(start.args.iter().cloned());
        let mut env = vec![("RUST_LOG".to_string(), "info,sqlx=warn".to_string())];
        if let Some(points) = &start.failpoints {
            env.push(("TXLAB_FAILPOINTS".into(), points.clone()));
        }
        let spec = ServiceSpec {
            name: format!("{}-{}", role.name(), self.starts),
            program: program.into(),
            args,
            env,
            listen: addr,
        };
        let process = ServiceProcess::start(spec, &self.log_dir, Duration::from_secs(30))
            .await
            .expect("service starts");
        self.procs.insert(role, process);
    }

    pub fn process(&mut self, role: Role) -> &mut ServiceProcess {
        self.procs.get_mut(&role).expect("process started")
    }

    /// The log of `role`'s current process.
    pub fn log_path(&self, role: Role) -> PathBuf {
        self.procs[&role].log_path()
    }

    /// SIGKILL.
    pub fn kill(&mut self, role: Role) {
        if let Some(mut p) = self.procs.remove(&role) {
            p.kill();
        }
    }

    /// Polite stop of every process.
    pub fn stop_all(&mut self) {
        for (_, mut p) in self.procs.drain() {
            p.stop();
        }
    }

    /// The process serving `OrderApi` in this mode.
    pub fn front(&self) -> Role {
        match self.mode {
            Mode::Orchestrated => Role::Orchestrator,
            Mode::Choreographed => Role::Order,
        }
    }

    pub async fn client(&self) -> OrderApiClient<tonic::transport::Channel> {
        OrderApiClient::connect(format!("http://{}", self.addrs[&self.front()]))
            .await
            .expect("front reachable")
    }

    /// Waits until no saga or order is open and every outbox is drained.
    pub async fn wait_quiescent(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let open = self.open_work().await;
            if open == 0 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{}: {open} sagas/orders/outbox rows still open after {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn open_work(&self) -> i64 {
        let count = |pool: &sqlx::PgPool, sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let outbox = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
        let mut open = count(
            &self.dbs.orders,
            "SELECT count(*) FROM orders WHERE status = 'PENDING'",
        )
        .await;
        open += count(
            &self.dbs.orchestrator,
            "SELECT count(*) FROM sagas WHERE NOT terminal",
        )
        .await;
        for pool in [
            &self.dbs.orders,
            &self.dbs.payments,
            &self.dbs.inventory,
            &self.dbs.orchestrator,
        ] {
            open += count(pool, outbox).await;
        }
        open
    }
}

/// A request with a deadline.
pub fn request(order: &common::domain::Order, deadline_ms: u32) -> pb::PlaceOrderRequest {
    let mut req = pb::PlaceOrderRequest::from(order);
    req.deadline_ms = deadline_ms;
    req
}

/// p50 and p99 of a histogram in milliseconds, for the test log.
pub fn p50_p99_ms(h: &Histogram<u64>) -> (f64, f64) {
    (
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, mut p) in self.procs.drain() {
            p.kill();
        }
    }
}
