//! The fault proxies of a run, named by the roles at their two ends (DESIGN §5). A fault on a
//! role acts on every link that touches it: under 2PC "payment" is coordinator→payment and
//! payment→coordinator, under sagas it is payment↔broker.

use super::schedule::Role;
use common::env::kafka::ClientListener;
use common::env::ports::free_port;
use common::fault_proxy::{FaultProxy, LinkFault};
use common::storage::{DatabaseUrls, Store};
use std::net::SocketAddr;
use std::sync::Arc;

/// One proxied link and the roles at its ends.
#[derive(Clone)]
pub struct Link {
    pub name: String,
    pub ends: (Role, Role),
    /// The broker node at one end, for a link to the broker.
    pub node: Option<u32>,
    pub proxy: Arc<FaultProxy>,
}

impl Link {
    async fn start(name: &str, ends: (Role, Role), upstream: SocketAddr) -> std::io::Result<Link> {
        Ok(Link {
            name: name.to_string(),
            ends,
            node: None,
            proxy: Arc::new(FaultProxy::start(name, upstream).await?),
        })
    }
}

/// The saga processes that talk to the broker, with their listener names and roles.
const BROKER_CLIENTS: [(&str, &str, Role); 4] = [
    ("order", "ORDER", Role::Order),
    ("payment", "PAYMENT", Role::Payment),
    ("inventory", "INVENTORY", Role::Inventory),
    ("orchestrator", "ORCHESTRATOR", Role::Coordinator),
];

/// On every broker node, one listener per saga process, each advertised at its own proxy, so a
/// process can be cut from the broker (or from one node of it) alone. They live as long as the
/// brokers do (they advertise them), across the protocols of a `compare`.
pub struct BrokerLinks {
    links: Vec<(&'static str, Link)>,
}

impl BrokerLinks {
    /// Starts the proxies on fixed ports for the listeners of `nodes` broker nodes; the
    /// brokers must then be started with the returned listeners (and on the same ports again
    /// after a crash).
    pub async fn prepare(nodes: u32) -> std::io::Result<(BrokerLinks, Vec<ClientListener>)> {
        let mut links = Vec::new();
        let mut listeners = Vec::new();
        for node in 1..=nodes {
            for (process, listener, role) in BROKER_CLIENTS {
                let port = free_port()?;
                let name = if nodes == 1 {
                    format!("{process}↔broker")
                } else {
                    format!("{process}↔broker-{node}")
                };
                let mut link = Link::start(
                    &name,
                    (role, Role::Broker),
                    SocketAddr::from(([127, 0, 0, 1], port)),
                )
                .await?;
                link.node = Some(node);
                listeners.push(ClientListener {
                    node,
                    name: listener.into(),
                    port: Some(port),
                    advertised: Some(link.proxy.addr()),
                });
                links.push((process, link));
            }
        }
        Ok((BrokerLinks { links }, listeners))
    }

    /// The bootstrap servers `process` must use (its proxy to each node).
    pub fn bootstrap_for(&self, process: &str) -> Option<String> {
        let proxies: Vec<String> = self
            .links_of(process)
            .map(|l| l.proxy.addr().to_string())
            .collect();
        (!proxies.is_empty()).then(|| proxies.join(","))
    }

    fn links_of<'a>(&'a self, process: &'a str) -> impl Iterator<Item = &'a Link> + 'a {
        self.links
            .iter()
            .filter(move |(p, _)| *p == process)
            .map(|(_, l)| l)
    }
}

/// A proxy between each service and its own database, so that a fault can cut one service from
/// its PostgreSQL while the lab's own connections (seeding, settling, the checker) stay direct.
#[derive(Default)]
pub struct DatabaseLinks {
    links: Vec<Link>,
}

impl DatabaseLinks {
    /// Starts a proxy in front of each database of `stores` (with the database role that names
    /// it, e.g. `payment_db` for payments); returns them and `urls` with those databases reached
    /// through them. Proxies bind before the protocol's ports are drawn, so none collide.
    pub async fn start(
        urls: &DatabaseUrls,
        stores: &[(Role, Store)],
    ) -> std::io::Result<(DatabaseLinks, DatabaseUrls)> {
        let mut proxied = urls.clone();
        let mut links = Vec::new();
        for &(role, store) in stores {
            let owner = role.owner().expect("a database role");
            let url = urls.get(store);
            let (upstream, rewrite) = split_address(url).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} has no host:port to proxy", common::storage::redact(url)),
                )
            })?;
            let name = format!("{}→{}", owner.as_str(), role.as_str());
            let link = Link::start(&name, (owner, role), upstream).await?;
            *proxied.get_mut(store) = rewrite(link.proxy.addr());
            links.push(link);
        }
        Ok((DatabaseLinks { links }, proxied))
    }
}

/// The IP address and port of a lab URL `postgres://user@127.0.0.1:port/db`, and how to write
/// the URL with another address in their place.
fn split_address(url: &str) -> Option<(SocketAddr, impl Fn(SocketAddr) -> String + '_)> {
    let start = url.find("://")? + 3;
    let start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let end = url[start..]
        .find('/')
        .map_or(url.len(), |slash| start + slash);
    let addr: SocketAddr = url[start..end].parse().ok()?;
    Some((addr, move |to: SocketAddr| {
        format!("{}{to}{}", &url[..start], &url[end..])
    }))
}

/// The links of one protocol run.
#[derive(Default)]
pub struct Network {
    links: Vec<Link>,
    client_link: Option<Link>,
    /// Kept apart from `links`: a fault on a service's role leaves its database link alone.
    database_links: Vec<Link>,
}

impl Network {
    /// 2PC: one proxy each way between the coordinator and each participant. `participants`
    /// holds each participant's role and address.
    pub async fn twopc(
        coordinator: SocketAddr,
        participants: &[(Role, SocketAddr)],
    ) -> std::io::Result<Network> {
        let mut links = Vec::new();
        for (role, addr) in participants {
            let name = role.as_str();
            links.push(
                Link::start(
                    &format!("coordinator→{name}"),
                    (Role::Coordinator, *role),
                    *addr,
                )
                .await?,
            );
            links.push(
                Link::start(
                    &format!("{name}→coordinator"),
                    (*role, Role::Coordinator),
                    coordinator,
                )
                .await?,
            );
        }
        Ok(Network {
            links,
            ..Network::default()
        })
    }

    /// Sagas: the broker links of the processes that run (`order`, `payment`, `inventory`,
    /// and `orchestrator` when orchestrated).
    pub fn saga(broker: &BrokerLinks, processes: &[&str]) -> Network {
        let links = processes
            .iter()
            .flat_map(|p| broker.links_of(p).cloned())
            .collect();
        Network {
            links,
            ..Network::default()
        }
    }

    /// Adds the links between the services and their databases.
    pub fn add_databases(&mut self, databases: DatabaseLinks) {
        self.database_links.extend(databases.links);
    }

    /// Puts a proxy on the client's link to the front service; returns the URL to use.
    pub async fn proxy_client(&mut self, front: SocketAddr) -> std::io::Result<String> {
        let link = Link::start("client→front", (Role::Client, Role::Client), front).await?;
        let url = format!("http://{}", link.proxy.addr());
        self.client_link = Some(link);
        Ok(url)
    }

    /// The links a fault on `role` acts on (none: it does not apply to this protocol).
    pub fn links_of(&self, role: Role) -> Vec<&Link> {
        if role == Role::Client {
            return self.client_link.iter().collect();
        }
        if role.owner().is_some() {
            return self
                .database_links
                .iter()
                .filter(|l| l.ends.1 == role)
                .collect();
        }
        self.links
            .iter()
            .filter(|l| l.ends.0 == role || l.ends.1 == role)
            .collect()
    }

    /// Sets `fault` on every saga process's link to broker node `node`; returns their names.
    pub fn set_on_broker_node(&self, node: u32, fault: LinkFault) -> Vec<String> {
        self.links
            .iter()
            .filter(|l| l.node == Some(node))
            .map(|l| {
                l.proxy.set(fault);
                l.name.clone()
            })
            .collect()
    }

    /// Sets `fault` on every link of `role`; returns their names.
    pub fn set(&self, role: Role, fault: LinkFault) -> Vec<String> {
        self.links_of(role)
            .into_iter()
            .map(|l| {
                l.proxy.set(fault);
                l.name.clone()
            })
            .collect()
    }

    /// Partitions every link of `role` and, when it is the front door, the client's link too;
    /// returns their names.
    pub fn isolate(&self, role: Role, front: bool) -> Vec<String> {
        let mut cut = self.set(role, LinkFault::Partition);
        if front {
            cut.extend(self.set(Role::Client, LinkFault::Partition));
        }
        cut
    }

    /// Undoes [`Network::isolate`].
    pub fn rejoin(&self, role: Role, front: bool) {
        self.set(role, LinkFault::Healthy);
        if front {
            self.set(Role::Client, LinkFault::Healthy);
        }
    }

    /// Every link back to healthy (broker links outlive a run).
    pub fn heal_all(&self) {
        let all = self.links.iter().chain(&self.database_links);
        for link in all.chain(&self.client_link) {
            link.proxy.set(LinkFault::Healthy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_gets_the_proxys_address() {
        let url = "postgres://lab@127.0.0.1:5432/orders?sslmode=disable";
        let (addr, rewrite) = split_address(url).unwrap();
        assert_eq!(addr, "127.0.0.1:5432".parse().unwrap());
        let proxy = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(
            rewrite(proxy),
            "postgres://lab@127.0.0.1:40001/orders?sslmode=disable"
        );
        let (_, rewrite) = split_address("postgres://127.0.0.1:5/db").unwrap();
        assert_eq!(rewrite(proxy), "postgres://127.0.0.1:40001/db");
        assert!(split_address("postgres://db.example/orders").is_none());
    }
}
