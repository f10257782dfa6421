//! The branches this participant holds prepared, and applying a decision to one. A prepared
//! branch belongs to PostgreSQL, not to a session (`PREPARE TRANSACTION`): its locks stay held
//! and survive a crash until `COMMIT PREPARED` or `ROLLBACK PREPARED`, from any connection.

use crate::protocol::Decision;
use common::metrics::MetricsRegistry;
use common::storage::quote_literal;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SQLSTATE 42704 (undefined_object): no prepared transaction with that gid.
const NO_SUCH_PREPARED: &str = "42704";

/// One prepared branch, as this process knows it.
#[derive(Clone, Copy, Debug)]
pub struct PreparedBranch {
    /// When its row locks were all granted: lock-hold time runs from here to the decision.
    pub locked_at: Instant,
    /// When it voted YES (or was found prepared at start-up): in-doubt time runs from here.
    pub prepared_at: Instant,
    /// Found in `pg_prepared_xacts` at start-up: resolve it at once.
    pub recovered: bool,
}

/// How a decision reached a branch, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// The coordinator sent Commit or Abort.
    Coordinator,
    /// The participant asked `Decision(gid)` after waiting in doubt.
    Inquiry,
}

#[derive(Clone)]
pub struct PreparedBranches {
    /// Suffix of this participant's prepared-transaction names (see [`PreparedBranches::pg_gid`]).
    service: &'static str,
    pool: PgPool,
    metrics: MetricsRegistry,
    branches: Arc<Mutex<HashMap<String, PreparedBranch>>>,
    /// Aborts that arrived before their branch prepared (the coordinator gave up waiting): the
    /// late prepare must roll itself back. Entries expire after a minute.
    early_aborts: Arc<Mutex<HashMap<String, Instant>>>,
}

impl PreparedBranches {
    pub fn new(service: &'static str, pool: PgPool, metrics: MetricsRegistry) -> Self {
        PreparedBranches {
            service,
            pool,
            metrics,
            branches: Arc::default(),
            early_aborts: Arc::default(),
        }
    }

    /// The name of this participant's branch of `gid` in PostgreSQL. Prepared-transaction names
    /// are unique per cluster, and services may share one, so the service is part of the name.
    pub fn pg_gid(&self, gid: &str) -> String {
        format!("{gid}@{}", self.service)
    }

    pub fn insert(&self, gid: &str, branch: PreparedBranch) {
        self.branches
            .lock()
            .expect("branches lock")
            .insert(gid.to_string(), branch);
    }

    /// Branches prepared for longer than `after` (or recovered), excluding `busy`.
    pub fn in_doubt(
        &self,
        after: Duration,
        busy: &std::collections::HashSet<String>,
    ) -> Vec<String> {
        let now = Instant::now();
        self.branches
            .lock()
            .expect("branches lock")
            .iter()
            .filter(|(gid, b)| {
                (b.recovered || now.duration_since(b.prepared_at) >= after) && !busy.contains(*gid)
            })
            .map(|(gid, _)| gid.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.branches.lock().expect("branches lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes an Abort for a gid that is not (yet) prepared here.
    pub fn note_early_abort(&self, gid: &str) {
        let mut aborts = self.early_aborts.lock().expect("aborts lock");
        let now = Instant::now();
        aborts.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        aborts.insert(gid.to_string(), now);
    }

    /// Whether an Abort for `gid` already arrived (and forgets it).
    pub fn take_early_abort(&self, gid: &str) -> bool {
        self.early_aborts
            .lock()
            .expect("aborts lock")
            .remove(gid)
            .is_some()
    }

    pub fn is_prepared(&self, gid: &str) -> bool {
        self.branches
            .lock()
            .expect("branches lock")
            .contains_key(gid)
    }

    /// Applies `decision` to the branch `gid`. Idempotent: a gid that is not prepared (already
    /// decided, or never prepared) is success.
    pub async fn decide(
        &self,
        gid: &str,
        decision: Decision,
        by: DecidedBy,
    ) -> Result<(), sqlx::Error> {
        let statement = match decision {
            Decision::Commit => format!("COMMIT PREPARED {}", quote_literal(&self.pg_gid(gid))),
            Decision::Abort => format!("ROLLBACK PREPARED {}", quote_literal(&self.pg_gid(gid))),
        };
        let started = Instant::now();
        let applied = match sqlx::query(&statement).execute(&self.pool).await {
            Ok(_) => true,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(NO_SUCH_PREPARED) => false,
            Err(e) => return Err(e),
        };
        let released = Instant::now();
        let known = self.branches.lock().expect("branches lock").remove(gid);
        if applied {
            self.metrics.record("decision", released - started);
            self.metrics.add(
                if decision == Decision::Commit {
                    "committed"
                } else {
                    "aborted"
                },
                1,
            );
            if let Some(branch) = known {
                self.metrics
                    .record("lock_hold", released - branch.locked_at);
                let blocked = released - branch.prepared_at;
                self.metrics.observe_max("prepared_max", blocked);
                if by == DecidedBy::Inquiry {
                    self.metrics.record("in_doubt", blocked);
                    self.metrics.observe_max("in_doubt_max", blocked);
                }
            }
        } else {
            self.metrics.add("decision_for_unknown_gid", 1);
        }
        Ok(())
    }

    /// Loads the branches PostgreSQL holds prepared in this database (after a restart), dated by
    /// the database's own `prepared` timestamp.
    pub async fn recover(&self) -> Result<usize, sqlx::Error> {
        self.adopt_unknown(Duration::ZERO).await
    }

    /// Takes on the branches PostgreSQL holds prepared for this service, older than `min_age`,
    /// that this process does not know: at start-up all of them; later, a branch whose PREPARE
    /// succeeded but whose reply was lost and whose rollback then failed too. Adopted branches
    /// are resolved at once by asking the coordinator, so none holds its locks until a restart.
    /// `min_age` leaves alone a PREPARE that just succeeded and is about to be registered.
    pub async fn adopt_unknown(&self, min_age: Duration) -> Result<usize, sqlx::Error> {
        let rows: Vec<(String, f64)> = sqlx::query_as(
            "SELECT gid, EXTRACT(EPOCH FROM (now() - prepared))::float8 FROM pg_prepared_xacts
             WHERE database = current_database() AND prepared < now() - make_interval(secs => $1)",
        )
        .bind(min_age.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let now = Instant::now();
        let suffix = format!("@{}", self.service);
        let mut branches = self.branches.lock().expect("branches lock");
        let mut adopted = 0;
        for (name, age_secs) in &rows {
            let Some(gid) = name.strip_suffix(&suffix) else {
                continue;
            };
            if branches.contains_key(gid) {
                continue;
            }
            let since = now
                .checked_sub(Duration::from_secs_f64(age_secs.max(0.0)))
                .unwrap_or(now);
            branches.insert(
                gid.to_string(),
                PreparedBranch {
                    locked_at: since,
                    prepared_at: since,
                    recovered: true,
                },
            );
            adopted += 1;
        }
        Ok(adopted)
    }
}
