//! The PostgreSQL side of a topology: one cluster holding every owner's databases (`single`),
//! or one cluster per owner (`replicated`), each its own postmaster, so that a database crash
//! hits one service alone.

use super::postgres::{PostgresCluster, PostgresConfig};
use super::EnvError;
use crate::storage::{DatabaseUrls, Store};
use std::path::Path;

/// Every cluster of the environment; each store's databases live in exactly one of them.
#[derive(Debug)]
pub struct PostgresClusters {
    // The first holds the lab's scratch databases (`postgres`, `probe`).
    clusters: Vec<PostgresCluster>,
}

impl PostgresClusters {
    /// One cluster for everything, or (`per_owner`) one per store, started in turn. On error
    /// the clusters already started are stopped as they drop.
    pub async fn start(
        config: &PostgresConfig,
        run_dir: &Path,
        per_owner: bool,
    ) -> Result<PostgresClusters, EnvError> {
        let mut clusters = Vec::new();
        if per_owner {
            for store in Store::ALL {
                clusters.push(PostgresCluster::start_for(config, run_dir, Some(store)).await?);
            }
        } else {
            clusters.push(PostgresCluster::start(config, run_dir).await?);
        }
        Ok(PostgresClusters { clusters })
    }

    /// The cluster that holds `store`'s databases.
    pub fn cluster_of(&self, store: Store) -> &PostgresCluster {
        self.clusters
            .iter()
            .find(|c| c.stores().contains(&store))
            .expect("every store has a cluster")
    }

    /// The same, to crash or restart it.
    pub fn cluster_of_mut(&mut self, store: Store) -> &mut PostgresCluster {
        self.clusters
            .iter_mut()
            .find(|c| c.stores().contains(&store))
            .expect("every store has a cluster")
    }

    pub fn clusters(&self) -> &[PostgresCluster] {
        &self.clusters
    }

    /// Whether each owner has a cluster of its own.
    pub fn per_owner(&self) -> bool {
        self.clusters.len() > 1
    }

    /// URL of a scratch database (`postgres`, `probe`) in the first cluster.
    pub fn url(&self, database: &str) -> String {
        self.clusters[0].url(database)
    }

    /// The first cluster's port (where the scratch databases are).
    pub fn port(&self) -> u16 {
        self.clusters[0].port()
    }

    /// The first cluster's postmaster.
    pub fn pid(&self) -> u32 {
        self.clusters[0].pid()
    }

    /// Every postmaster.
    pub fn pids(&self) -> Vec<u32> {
        self.clusters.iter().map(PostgresCluster::pid).collect()
    }

    /// The first cluster's data directory (for the disk the report names).
    pub fn data_dir(&self) -> &Path {
        self.clusters[0].data_dir()
    }

    /// URLs of the databases named `<prefix><store>`, each in its store's cluster.
    pub fn urls(&self, prefix: &str) -> DatabaseUrls {
        DatabaseUrls::from_fn(|store| {
            self.cluster_of(store)
                .url(&format!("{prefix}{}", store.name()))
        })
    }

    /// Creates the databases named `<prefix><store>` where missing.
    pub async fn create_databases(&self, prefix: &str) -> Result<DatabaseUrls, EnvError> {
        for cluster in &self.clusters {
            cluster.create_databases(prefix).await?;
        }
        Ok(self.urls(prefix))
    }

    /// Drops and re-creates the databases named `<prefix><store>`: a clean slate.
    pub async fn recreate_databases(&self, prefix: &str) -> Result<DatabaseUrls, EnvError> {
        for cluster in &self.clusters {
            cluster.recreate_databases(prefix).await?;
        }
        Ok(self.urls(prefix))
    }

    /// A SIGKILL of every postmaster.
    pub fn kill(&mut self) {
        for cluster in &mut self.clusters {
            cluster.kill();
        }
    }

    /// Fast shutdown of every cluster, waiting for each.
    pub fn stop(&mut self) {
        for cluster in &mut self.clusters {
            cluster.stop();
        }
    }
}
