//! `loadgen env up`: the local environment as a deployment. It starts PostgreSQL and Kafka in
//! the chosen topology, creates every protocol's databases and a probe database, prints the
//! deployment file naming them (each protocol `start = "here"`: the lab starts the protocol
//! processes against that infrastructure), and keeps everything up until SIGTERM or Ctrl-C.
//! `compare --deployment` then drives it knowing only the file, as it drives a deployment the
//! lab did not start; that is how deployed mode is tested without Docker.

use crate::cli::EnvUpArgs;
use crate::run::probe::ProbeTargets;
use crate::scenario::Protocol;
use crate::LoadgenError;
use common::env::{LabEnv, LabEnvConfig, Topology};
use common::storage::{DatabaseUrls, Store};
use std::io::Write;

/// Each protocol's database name prefix, as in deploy/compose.toml.
const PREFIXES: [(Protocol, &str); 3] = [
    (Protocol::Twopc, "twopc_"),
    (Protocol::SagaOrchestrated, "orch_"),
    (Protocol::SagaChoreographed, "choreo_"),
];

/// Runs `env up` until asked to stop.
pub async fn up(args: &EnvUpArgs) -> Result<(), LoadgenError> {
    let topology = args.env.topology.unwrap_or_default();
    let env = LabEnv::start(&LabEnvConfig::with_topology(&args.env.run_dir, topology)).await?;
    let probe = ProbeTargets::local(&env).await?;
    let mut protocols = Vec::new();
    for (protocol, prefix) in PREFIXES {
        protocols.push((protocol, env.postgres.create_databases(prefix).await?));
    }
    let bootstrap = env.bootstrap_servers();
    let file = deployment_file(topology, &probe.database_url, &bootstrap, &protocols);
    if args.print_deployment {
        print_and_close_stdout(&file).map_err(|source| LoadgenError::Io {
            what: "printing the deployment file",
            source,
        })?;
    }
    eprintln!(
        "environment up ({} topology): Kafka at {bootstrap}, PostgreSQL on port(s) {}; logs in {}. \
         Stop it with Ctrl-C (or SIGTERM).",
        topology.as_str(),
        env.postgres
            .clusters()
            .iter()
            .map(|c| c.port().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.env.run_dir.join("logs").display()
    );
    common::process::stop_requested().await;
    eprintln!("stopping the environment");
    env.stop();
    Ok(())
}

/// Writes `text` to stdout, then points stdout at /dev/null: a reader of a pipe sees the end of
/// the file while the environment keeps running.
fn print_and_close_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: dup2 on two open descriptors; stdout stays a valid descriptor afterwards.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The deployment file of a local environment: its probe database and brokers, and for each
/// protocol its databases with `start = "here"`.
pub fn deployment_file(
    topology: Topology,
    probe_database: &str,
    bootstrap: &str,
    protocols: &[(Protocol, DatabaseUrls)],
) -> String {
    let quote = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut file = format!(
        "# Written by `loadgen env up --topology {}`: the local environment as a deployment.\n\
         # Its processes live as long as that command; drive it with\n\
         #   loadgen compare --scenario quick --deployment <this file>\n\n\
         [probe]\ndatabase = {}\nkafka = {}\n",
        topology.as_str(),
        quote(probe_database),
        quote(bootstrap)
    );
    for (protocol, urls) in protocols {
        let name = protocol.name();
        file += &format!("\n[{name}]\nstart = \"here\"\n\n[{name}.databases]\n");
        for store in Store::ALL {
            file += &format!("{} = {}\n", store.name(), quote(urls.get(store)));
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::deployed::Deployment;
    use std::path::Path;

    #[test]
    fn the_printed_file_is_a_valid_deployment_that_starts_everything_here() {
        let urls = |prefix: &str| DatabaseUrls {
            orders: format!("postgres://lab@127.0.0.1:5001/{prefix}orders"),
            payments: format!("postgres://lab@127.0.0.1:5002/{prefix}payments"),
            inventory: format!("postgres://lab@127.0.0.1:5003/{prefix}inventory"),
            coordinator: format!("postgres://lab@127.0.0.1:5004/{prefix}coordinator"),
            orchestrator: format!("postgres://lab@127.0.0.1:5005/{prefix}orchestrator"),
        };
        let protocols: Vec<(Protocol, DatabaseUrls)> = PREFIXES
            .iter()
            .map(|(p, prefix)| (*p, urls(prefix)))
            .collect();
        let text = deployment_file(
            Topology::Replicated,
            "postgres://lab@127.0.0.1:5001/probe",
            "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003",
            &protocols,
        );
        let deployment = Deployment::parse(&text, Path::new("env-up.toml")).unwrap();
        for (protocol, _) in PREFIXES {
            let section = deployment.protocol(protocol).unwrap();
            assert!(section.started_here() && section.front.is_none());
        }
        let orchestrated = deployment.protocol(Protocol::SagaOrchestrated).unwrap();
        assert_eq!(
            orchestrated.databases.payments,
            "postgres://lab@127.0.0.1:5002/orch_payments"
        );
        assert_eq!(
            deployment.probe.kafka.as_deref(),
            Some("127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003")
        );
    }
}
