//! Where measurements run: PostgreSQL and Kafka the lab starts itself, or a deployment it only
//! drives (`--deployment`); and the floors measured on it.

use crate::run::deployed::Deployment;
use crate::run::faults::network::BrokerLinks;
use crate::run::probe::{self, Floors, ProbeTargets};
use crate::scenario::Protocol;
use crate::LoadgenError;
use common::env::{LabEnv, LabEnvConfig, Topology};
use std::path::Path;

/// The environment measurements run in: the lab's own, or a deployment it only drives.
pub enum Lab {
    Local(Box<LocalLab>),
    Deployed(Box<Deployment>),
}

/// PostgreSQL and Kafka the lab started; it starts the protocols' processes too.
pub struct LocalLab {
    pub env: LabEnv,
    /// How it was started: a crashed broker restarts from this, on the same ports.
    pub config: LabEnvConfig,
    /// With faults: the broker's listener per saga process, each behind its proxy.
    pub broker_links: Option<BrokerLinks>,
}

impl Lab {
    /// Starts PostgreSQL and Kafka in `run_dir`, in `topology`. With `faults`, every broker
    /// node has one proxied listener per saga process (a crashed node comes back on the same
    /// ports, where its clients look).
    pub async fn start(
        run_dir: &Path,
        topology: Topology,
        faults: bool,
    ) -> Result<Lab, LoadgenError> {
        let mut config = LabEnvConfig::with_topology(run_dir, topology);
        // Every measurement starts from the same broker: no partitions of earlier runs, which
        // a broker restart (a fault) would otherwise have to recover too.
        config.fresh_kafka = true;
        let mut broker_links = None;
        if faults {
            let io = |source| LoadgenError::Io {
                what: "preparing the broker's proxied listeners",
                source,
            };
            let (links, listeners) = BrokerLinks::prepare(config.kafka.brokers)
                .await
                .map_err(io)?;
            config.kafka.client_listeners = listeners;
            broker_links = Some(links);
        }
        let env = LabEnv::start(&config).await?;
        Ok(Lab::Local(Box::new(LocalLab {
            env,
            config,
            broker_links,
        })))
    }

    /// Where the floors are measured: the lab's cluster and broker, or the deployment's.
    async fn probe_targets(&self) -> Result<ProbeTargets, LoadgenError> {
        Ok(match self {
            Lab::Local(local) => ProbeTargets::local(&local.env).await?,
            Lab::Deployed(d) => ProbeTargets {
                database_url: d.probe.database.clone(),
                kafka: d.probe.kafka.clone(),
                grpc_front: [
                    Protocol::Twopc,
                    Protocol::SagaOrchestrated,
                    Protocol::SagaChoreographed,
                ]
                .into_iter()
                .find_map(|p| d.protocol(p).and_then(|s| s.front.clone())),
            },
        })
    }

    /// The broker's bootstrap address, when there is one.
    pub fn kafka_bootstrap(&self) -> Option<String> {
        match self {
            Lab::Local(local) => Some(local.env.bootstrap_servers()),
            Lab::Deployed(d) => d.probe.kafka.clone(),
        }
    }

    /// A URL of a database PostgreSQL answers on, for its version.
    pub fn any_database_url(&self) -> String {
        match self {
            Lab::Local(local) => local.env.postgres.url("postgres"),
            Lab::Deployed(d) => d.probe.database.clone(),
        }
    }

    /// Stops what the lab started (nothing, for a deployment).
    pub fn stop(self) {
        if let Lab::Local(local) = self {
            local.env.stop();
        }
    }
}

/// Measures the floors (DESIGN §6), 300 samples of each primitive.
pub async fn floors(lab: &Lab) -> Result<Floors, LoadgenError> {
    eprintln!("probing the floors: gRPC round trip, PostgreSQL commit, PREPARE+COMMIT PREPARED, Kafka hop");
    Ok(probe::measure(&lab.probe_targets().await?, 300).await?)
}
