//! The in-doubt resolver: a prepared branch that has heard no decision after a while asks the
//! coordinator, and keeps asking with backoff until it gets COMMIT or ABORT. Meanwhile it holds
//! its locks: that is 2PC's blocking, and the metrics record how long it lasted.

use super::prepared::{DecidedBy, PreparedBranches};
use crate::protocol::Decision;
use common::api::twopc_pb::{coordinator_client::CoordinatorClient, DecisionKind, GidRequest};
use common::metrics::MetricsRegistry;
use common::retry::Backoff;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// How often the resolver looks in `pg_prepared_xacts` for branches this process lost track of.
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A prepared branch younger than this is never taken for lost: its PREPARE may have just
/// succeeded, its registration a moment away.
const ORPHAN_MIN_AGE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct InDoubtResolver {
    pub branches: PreparedBranches,
    pub coordinator: CoordinatorClient<Channel>,
    pub metrics: MetricsRegistry,
    /// How long a prepared branch waits for the coordinator before asking.
    pub ask_after: Duration,
    busy: Arc<Mutex<HashSet<String>>>,
}

impl InDoubtResolver {
    pub fn new(
        branches: PreparedBranches,
        coordinator: CoordinatorClient<Channel>,
        metrics: MetricsRegistry,
        ask_after: Duration,
    ) -> Self {
        InDoubtResolver {
            branches,
            coordinator,
            metrics,
            ask_after,
            busy: Arc::default(),
        }
    }

    /// Scans for branches in doubt until `shutdown` fires; each gets its own inquiry task.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let scan_every =
            (self.ask_after / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let mut last_sweep = std::time::Instant::now();
        loop {
            if last_sweep.elapsed() >= ORPHAN_SWEEP_EVERY {
                last_sweep = std::time::Instant::now();
                match self
                    .branches
                    .adopt_unknown(self.ask_after.max(ORPHAN_MIN_AGE))
                    .await
                {
                    Ok(0) => {}
                    Ok(adopted) => {
                        self.metrics.add("orphans_adopted", adopted as u64);
                        tracing::warn!(
                            adopted,
                            "prepared branches this process did not know; resolving them"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot sweep pg_prepared_xacts"),
                }
            }
            let busy = self.busy.lock().expect("busy lock").clone();
            for gid in self.branches.in_doubt(self.ask_after, &busy) {
                self.busy.lock().expect("busy lock").insert(gid.clone());
                let resolver = self.clone();
                tokio::spawn(async move {
                    resolver.resolve(&gid).await;
                    resolver.busy.lock().expect("busy lock").remove(&gid);
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(scan_every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn resolve(&self, gid: &str) {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
        loop {
            if !self.branches.is_prepared(gid) {
                return; // The coordinator's decision arrived meanwhile.
            }
            self.metrics.add("inquiries", 1);
            let mut client = self.coordinator.clone();
            let mut request = tonic::Request::new(GidRequest {
                gid: gid.to_string(),
            });
            request.set_timeout(Duration::from_secs(1));
            let decision = match client
                .decision(request)
                .await
                .map(|r| r.into_inner().decision())
            {
                Ok(DecisionKind::Commit) => Some(Decision::Commit),
                Ok(DecisionKind::Abort) => Some(Decision::Abort),
                Ok(_) => None,
                Err(status) => {
                    tracing::debug!(gid, cause = %status.message(), "coordinator unreachable while in doubt");
                    None
                }
            };
            if let Some(decision) = decision {
                match self
                    .branches
                    .decide(gid, decision, DecidedBy::Inquiry)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(gid, ?decision, "in-doubt branch resolved");
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(gid, cause = %err, "applying the decision failed; retrying")
                    }
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}
