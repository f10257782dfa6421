//! The replicated shape for Docker users, checked without Docker: deploy/replicated/deploy.toml
//! parses as a deployment, and it, docker-compose.yml and toxiproxy.json beside it agree —
//! every proxy a link names exists and forwards to a compose service, the services reach their
//! databases and 2PC peers through Toxiproxy, every command template names a compose service,
//! every endpoint and database the file names is published on loopback, and the brokers form
//! one quorum of three.

use loadgen::run::deployed::Deployment;
use loadgen::scenario::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/replicated")
}

/// The compose file's services, `<<:` merges applied.
fn services() -> serde_yaml::Mapping {
    let text = std::fs::read_to_string(dir().join("docker-compose.yml")).unwrap();
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&text).expect("it parses");
    compose.apply_merge().expect("its merges resolve");
    let mut services = compose["services"].as_mapping().expect("services").clone();
    for (_, service) in services.iter_mut() {
        service.apply_merge().expect("its merges resolve");
        if let Some(env) = service.get_mut("environment") {
            env.apply_merge().expect("its environment's merges resolve");
        }
    }
    services
}

fn strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Toxiproxy's config: proxy name → (listen port, upstream).
fn proxies() -> BTreeMap<String, (u16, String)> {
    let text = std::fs::read_to_string(dir().join("toxiproxy.json")).unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).expect("it parses");
    list.iter()
        .map(|p| {
            let listen = p["listen"].as_str().unwrap();
            let port = listen.rsplit(':').next().unwrap().parse().unwrap();
            (
                p["name"].as_str().unwrap().to_string(),
                (port, p["upstream"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

fn port_of(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_replicated_compose_files_agree_with_each_other() {
    let deployment = Deployment::load(&dir().join("deploy.toml")).expect("deploy.toml is valid");
    assert!(deployment.faults.is_some(), "it names its fault backend");
    let services = services();
    let names: BTreeSet<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let proxies = proxies();

    // Every port of every service is published on loopback only.
    let mut published = BTreeSet::new();
    for (name, service) in &services {
        for port in strings(&service["ports"]) {
            assert!(port.starts_with("127.0.0.1:"), "{name:?} publishes {port}");
            published.insert(port.split(':').nth(1).unwrap().parse::<u16>().unwrap());
        }
    }

    // Three brokers, one quorum.
    let brokers: Vec<&String> = names.iter().filter(|n| n.starts_with("kafka-")).collect();
    assert_eq!(brokers.len(), 3, "{names:?}");
    for broker in &brokers {
        let env = &services[broker.as_str()]["environment"];
        let voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].as_str().unwrap();
        for other in &brokers {
            assert!(voters.contains(other.as_str()), "{broker}: {voters}");
        }
        assert_eq!(
            env["KAFKA_MIN_INSYNC_REPLICAS"].as_u64(),
            Some(2),
            "{broker}"
        );
        assert_eq!(
            env["KAFKA_DEFAULT_REPLICATION_FACTOR"].as_u64(),
            Some(3),
            "{broker}"
        );
    }
    for server in deployment.probe.kafka.as_deref().unwrap().split(',') {
        assert!(
            published.contains(&port_of(&format!("k://{server}"))),
            "{server}"
        );
    }

    // Toxiproxy forwards only to compose services, and every proxied port is used by a
    // service's command.
    let commands: String = services
        .iter()
        .map(|(_, s)| strings(&s["command"]).join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    for (proxy, (port, upstream)) in &proxies {
        let host = upstream.split(':').next().unwrap();
        assert!(
            names.contains(host),
            "{proxy} forwards to {upstream}, not a service"
        );
        assert!(
            commands.contains(&format!("toxiproxy:{port}")),
            "no service goes through {proxy} (toxiproxy:{port})"
        );
    }

    for protocol in [
        Protocol::Twopc,
        Protocol::SagaOrchestrated,
        Protocol::SagaChoreographed,
    ] {
        let section = deployment.protocol(protocol).unwrap();
        let name = protocol.name();
        let front = section.front.as_deref().unwrap();
        for url in section.metrics.iter().map(String::as_str).chain([front]) {
            assert!(
                published.contains(&port_of(url)),
                "{name}: {url} is not published"
            );
        }
        for store in common::storage::Store::ALL {
            let url = section.databases.get(store);
            let port = port_of(url);
            let server = format!("pg-{}", store.name());
            let ports = strings(&services[server.as_str()]["ports"]);
            assert!(
                ports
                    .iter()
                    .any(|p| p.starts_with(&format!("127.0.0.1:{port}:"))),
                "{name}.databases.{}: {url} is not {server}'s port",
                store.name()
            );
        }
        for link in &section.links {
            assert!(
                proxies.contains_key(&link.proxy),
                "{name}: no proxy {:?}",
                link.proxy
            );
            // A database link's proxy forwards to that database's server.
            if link.ends.iter().any(|r| r.owner().is_some()) {
                let upstream = &proxies[&link.proxy].1;
                assert!(
                    upstream.starts_with("pg-"),
                    "{name}: {:?} → {upstream}",
                    link.proxy
                );
            }
        }
        for (role, templates) in &section.commands {
            for command in [
                &templates.crash,
                &templates.restart,
                &templates.pause,
                &templates.resume,
            ]
            .into_iter()
            .flatten()
            {
                let target = command.split_whitespace().last().unwrap();
                assert!(
                    names.contains(target),
                    "{name}.commands.{}: {command:?} names no compose service",
                    role.as_str()
                );
                assert!(
                    command.starts_with("docker compose -f deploy/replicated/docker-compose.yml "),
                    "{command}"
                );
            }
        }
    }
}
