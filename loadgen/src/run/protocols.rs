//! Starting a protocol's processes in the local environment, behind one face: the client API's
//! URL, the metrics endpoints, and what faults need (the links' proxies, crashing and restarting
//! a role's process). The load generator knows nothing else about a protocol.

use crate::run::faults::network::{BrokerLinks, DatabaseLinks, Network};
use crate::run::faults::schedule::Role;
use crate::scenario::{Protocol, Scenario};
use common::env::services::ServiceProcess;
use common::env::EnvError;
use common::storage::{DatabaseUrls, Store};
use saga::deployment::SagaDeployment;
use saga::Mode as SagaMode;
use std::path::Path;
use std::time::Duration;
use twopc::branch::ServiceKind;
use twopc::deployment::{Deployment, DeploymentConfig};

/// A protocol's processes.
pub enum Deployed {
    Twopc(Box<Deployment>),
    Saga(SagaDeployment),
}

/// A protocol's running processes and, when the scenario has faults, the proxies on its links;
/// dropping it stops the processes.
pub struct Running {
    pub deployed: Deployed,
    /// `None` when the scenario has no faults: links are direct, nothing added to the path.
    pub network: Option<Network>,
    client_url: String,
    /// The databases its processes own, by database role (`payment_db` → payments).
    databases: Vec<(Role, Store)>,
}

/// The databases `protocol`'s processes own, by database role: the coordinator's is the 2PC
/// decision log or the orchestrator's saga log; choreography has none.
fn owned_databases(protocol: Protocol) -> Vec<(Role, Store)> {
    let mut owned = vec![
        (Role::OrderDb, Store::Orders),
        (Role::PaymentDb, Store::Payments),
        (Role::InventoryDb, Store::Inventory),
    ];
    match protocol {
        Protocol::Twopc => owned.push((Role::CoordinatorDb, Store::Coordinator)),
        Protocol::SagaOrchestrated => owned.push((Role::CoordinatorDb, Store::Orchestrator)),
        Protocol::SagaChoreographed => {}
    }
    owned
}

/// How long a (re)started process may take to serve.
const READY: Duration = Duration::from_secs(60);

fn proxy_error(source: std::io::Error) -> EnvError {
    EnvError::Io {
        what: "starting a fault proxy",
        path: "127.0.0.1".into(),
        source,
    }
}

fn role_of(kind: ServiceKind) -> Role {
    match kind {
        ServiceKind::Order => Role::Order,
        ServiceKind::Payment => Role::Payment,
        ServiceKind::Inventory => Role::Inventory,
    }
}

/// Plans a 2PC deployment and, when `proxied`, the proxies on its links, routed. Ports are
/// found by binding and releasing, so a proxy bound afterwards could land on a port a process
/// was given: then the plan is drawn again.
async fn plan_twopc(
    config: DeploymentConfig,
    proxied: bool,
) -> Result<(Deployment, Option<Network>), EnvError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut deployment = Deployment::plan(config.clone())?;
        if !proxied {
            return Ok((deployment, None));
        }
        let participants: Vec<(Role, std::net::SocketAddr)> = ServiceKind::ALL
            .iter()
            .map(|k| (role_of(*k), deployment.participant_addr(*k)))
            .collect();
        let network = Network::twopc(deployment.coordinator_addr(), &participants)
            .await
            .map_err(proxy_error)?;
        let planned: Vec<std::net::SocketAddr> = participants
            .iter()
            .map(|(_, a)| *a)
            .chain([deployment.coordinator_addr()])
            .collect();
        let collides = ServiceKind::ALL.iter().any(|k| {
            network
                .links_of(role_of(*k))
                .iter()
                .any(|l| planned.contains(&l.proxy.addr()))
        });
        if collides && attempts < 5 {
            continue;
        }
        for kind in ServiceKind::ALL {
            let role = role_of(kind);
            for link in network.links_of(role) {
                if link.ends == (Role::Coordinator, role) {
                    deployment.route_to_participant(kind, link.proxy.addr());
                } else {
                    deployment.route_to_coordinator(kind, link.proxy.addr());
                }
            }
        }
        return Ok((deployment, Some(network)));
    }
}

impl Running {
    /// Starts `protocol` on `databases`, its binaries taken from `bin_dir`, logs in `log_dir`;
    /// saga processes use the brokers at `bootstrap`. With `proxied` (the scenario has faults)
    /// every link goes through a fault proxy; saga processes reach the broker through
    /// `broker_links` (their own listeners).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        protocol: Protocol,
        scenario: &Scenario,
        bootstrap: &str,
        databases: DatabaseUrls,
        bin_dir: &Path,
        log_dir: &Path,
        proxied: bool,
        broker_links: Option<&BrokerLinks>,
    ) -> Result<Running, EnvError> {
        let owned = owned_databases(protocol);
        let (database_links, databases) = if proxied {
            let (links, urls) = DatabaseLinks::start(&databases, &owned)
                .await
                .map_err(proxy_error)?;
            (Some(links), urls)
        } else {
            (None, databases)
        };
        let (deployed, mut network) = match protocol {
            Protocol::Twopc => {
                let mut config = DeploymentConfig::new(bin_dir, log_dir, databases);
                config.prepare_timeout = Duration::from_millis(scenario.twopc.prepare_timeout_ms);
                config.prepare_order = scenario.twopc.prepare_order;
                config.max_in_flight = scenario.twopc.max_in_flight;
                config.default_deadline = Duration::from_millis(scenario.deadline_ms);
                let (mut deployment, network) = plan_twopc(config, proxied).await?;
                deployment.launch().await?;
                (Deployed::Twopc(Box::new(deployment)), network)
            }
            Protocol::SagaOrchestrated | Protocol::SagaChoreographed => {
                let mode = if protocol == Protocol::SagaOrchestrated {
                    SagaMode::Orchestrated
                } else {
                    SagaMode::Choreographed
                };
                let step_timeout = Duration::from_millis(scenario.saga.step_timeout_ms);
                let bootstrap = |process: &str| {
                    broker_links
                        .and_then(|links| links.bootstrap_for(process))
                        .unwrap_or_else(|| bootstrap.to_string())
                };
                let deployment = SagaDeployment::start(
                    mode,
                    bin_dir,
                    log_dir,
                    &databases,
                    &bootstrap,
                    step_timeout,
                    &scenario.saga.admission(),
                )
                .await?;
                let network = proxied.then(|| {
                    let mut processes = vec!["order", "payment", "inventory"];
                    if mode == SagaMode::Orchestrated {
                        processes.push("orchestrator");
                    }
                    broker_links
                        .map_or_else(Network::default, |links| Network::saga(links, &processes))
                });
                (Deployed::Saga(deployment), network)
            }
        };
        let direct_url = match &deployed {
            Deployed::Twopc(d) => d.url(),
            Deployed::Saga(d) => d.url(),
        };
        if let (Some(network), Some(links)) = (network.as_mut(), database_links) {
            network.add_databases(links);
        }
        let client_url = match network.as_mut() {
            Some(network) => {
                let front = direct_url
                    .trim_start_matches("http://")
                    .parse()
                    .expect("deployments give http://ip:port");
                network.proxy_client(front).await.map_err(proxy_error)?
            }
            None => direct_url,
        };
        Ok(Running {
            deployed,
            network,
            client_url,
            databases: owned,
        })
    }

    /// The `OrderApi` endpoint the client uses (through its link's proxy when there is one).
    pub fn url(&self) -> String {
        self.client_url.clone()
    }

    /// Every process's metrics endpoint (direct: collecting figures is not part of the run).
    pub fn metrics_urls(&self) -> Vec<String> {
        match &self.deployed {
            Deployed::Twopc(d) => {
                let mut urls = vec![d.url()];
                urls.extend(ServiceKind::ALL.iter().map(|k| d.participant_url(*k)));
                urls
            }
            Deployed::Saga(d) => d.metrics_urls(),
        }
    }

    /// The process that plays `role` here, if one does (choreography has no coordinator; the
    /// broker is not a protocol process).
    fn process(&mut self, role: Role) -> Option<&mut ServiceProcess> {
        match &mut self.deployed {
            Deployed::Twopc(d) => match role {
                Role::Coordinator => d.coordinator.as_mut(),
                Role::Order => d.participant(ServiceKind::Order).as_mut(),
                Role::Payment => d.participant(ServiceKind::Payment).as_mut(),
                Role::Inventory => d.participant(ServiceKind::Inventory).as_mut(),
                _ => None,
            },
            Deployed::Saga(d) => match role {
                Role::Coordinator => d.process("orchestrator"),
                Role::Order => d.process("order"),
                Role::Payment => d.process("payment"),
                Role::Inventory => d.process("inventory"),
                _ => None,
            },
        }
    }

    /// The metrics endpoint of `role`'s process, if one plays it here (direct, never proxied).
    pub fn metrics_url_of(&mut self, role: Role) -> Option<String> {
        self.process(role)
            .map(|p| format!("http://{}", p.spec().listen))
    }

    /// SIGKILLs `role`'s process; `false` when no process plays it here.
    pub fn crash(&mut self, role: Role) -> bool {
        match self.process(role) {
            Some(process) => {
                process.kill();
                true
            }
            None => false,
        }
    }

    /// SIGSTOPs `role`'s process; `false` when no process plays it here.
    pub fn pause(&mut self, role: Role) -> bool {
        match self.process(role) {
            Some(process) => {
                process.pause();
                true
            }
            None => false,
        }
    }

    /// SIGCONTs `role`'s process after [`Running::pause`].
    pub fn resume(&mut self, role: Role) {
        if let Some(process) = self.process(role) {
            process.resume();
        }
    }

    /// The role whose process is the client's front door: the 2PC coordinator, the saga
    /// orchestrator, or (choreography) the order service.
    pub fn front_role(&self) -> Role {
        match &self.deployed {
            Deployed::Twopc(_) => Role::Coordinator,
            Deployed::Saga(d) if d.is_orchestrated() => Role::Coordinator,
            Deployed::Saga(_) => Role::Order,
        }
    }

    /// Restarts `role`'s process after a crash and waits until it serves.
    pub async fn restart(&mut self, role: Role) -> Result<(), EnvError> {
        match self.process(role) {
            Some(process) => process.restart(READY).await,
            None => Ok(()),
        }
    }

    /// The database that database role `role` names here (none: choreography has no
    /// coordinator's database).
    pub fn store_of(&self, role: Role) -> Option<Store> {
        self.databases
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, store)| *store)
    }

    /// The prefix of a saga deployment's topics and groups.
    pub fn saga_prefix(&self) -> Option<String> {
        match &self.deployed {
            Deployed::Saga(d) => Some(d.prefix().to_string()),
            Deployed::Twopc(_) => None,
        }
    }

    pub fn is_saga(&self) -> bool {
        matches!(self.deployed, Deployed::Saga(_))
    }
}
