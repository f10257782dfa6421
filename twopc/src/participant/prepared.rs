//! The branches this participant holds prepared, and applying a decision to one. A prepared
//! branch belongs to PostgreSQL, not to a session (`PREPARE TRANSACTION`): its locks stay held
//! and survive a crash until `COMMIT PREPARED` or `ROLLBACK PREPARED`, from any connection.

use crate::protocol::Decision;
use common::metrics::MetricsRegistry;
use common::storage::quote_literal;
use sqlx::Executor;
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
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

/// Where one gid stands at this participant. Owned by [`PreparedBranches`] and changed only by
/// its methods, each under one lock, so an Abort can never slip between a branch's PREPARE and
/// its registration.
#[derive(Clone, Copy, Debug)]
enum BranchState {
    /// Prepare is running (waiting for a connection, taking locks, or in PREPARE TRANSACTION).
    /// `abort_requested`: an Abort arrived meanwhile; the preparer rolls its branch back itself.
    Preparing { abort_requested: bool },
    /// PostgreSQL holds the branch prepared, locks held, until a decision is applied.
    Prepared(PreparedBranch),
    /// An Abort arrived before any Prepare (the coordinator gave up first): a late Prepare must
    /// not run. Expires after [`EARLY_ABORT_KEPT`].
    AbortedEarly { at: Instant },
}

/// How long an Abort that arrived before its Prepare is remembered; a Prepare is never that late
/// (its connection wait alone is bounded by the coordinator's timeout).
const EARLY_ABORT_KEPT: Duration = Duration::from_secs(60);

/// What a Prepare may do, decided when it begins.
#[derive(Debug, PartialEq, Eq)]
pub enum PrepareAdmission {
    /// Run the branch.
    Go,
    /// The coordinator has aborted already: vote NO without touching the database.
    AlreadyAborted,
    /// This gid is preparing or prepared here already (a duplicate Prepare).
    Duplicate,
}

/// What an Abort needs, given what this participant holds.
#[derive(Debug, PartialEq, Eq)]
pub enum AbortAction {
    /// A prepared branch: `ROLLBACK PREPARED` it.
    RollBack,
    /// Nothing prepared (the preparer, if any, will roll itself back): acknowledge at once.
    Noted,
}

#[derive(Clone)]
pub struct PreparedBranches {
    /// Suffix of this participant's prepared-transaction names (see [`PreparedBranches::pg_gid`]).
    service: &'static str,
    pool: PgPool,
    metrics: MetricsRegistry,
    states: Arc<Mutex<Branches>>,
}

/// Every gid's state, and the early Aborts in arrival order so that expiring them costs only
/// the expired ones.
#[derive(Default)]
struct Branches {
    by_gid: HashMap<String, BranchState>,
    early_aborts: VecDeque<(Instant, String)>,
}

impl Branches {
    /// Forgets the early Aborts older than [`EARLY_ABORT_KEPT`] (a gid that moved on since, e.g.
    /// to a refused Prepare, is left alone).
    fn expire_early_aborts(&mut self, now: Instant) {
        while let Some((at, _)) = self.early_aborts.front() {
            if now.duration_since(*at) < EARLY_ABORT_KEPT {
                break;
            }
            let (at, gid) = self.early_aborts.pop_front().expect("front exists");
            if matches!(self.by_gid.get(&gid), Some(BranchState::AbortedEarly { at: kept }) if *kept == at)
            {
                self.by_gid.remove(&gid);
            }
        }
    }
}

impl PreparedBranches {
    pub fn new(service: &'static str, pool: PgPool, metrics: MetricsRegistry) -> Self {
        PreparedBranches {
            service,
            pool,
            metrics,
            states: Arc::default(),
        }
    }

    /// The name of this participant's branch of `gid` in PostgreSQL. Prepared-transaction names
    /// are unique per cluster, and services may share one, so the service is part of the name.
    pub fn pg_gid(&self, gid: &str) -> String {
        format!("{gid}@{}", self.service)
    }

    fn states(&self) -> std::sync::MutexGuard<'_, Branches> {
        self.states.lock().expect("branch states lock")
    }

    /// A Prepare for `gid` begins: `Go` puts it in `Preparing`; it must end with
    /// [`PreparedBranches::prepared`] or [`PreparedBranches::prepare_ended`].
    pub fn begin_prepare(&self, gid: &str) -> PrepareAdmission {
        let mut states = self.states();
        match states.by_gid.get(gid) {
            Some(BranchState::AbortedEarly { .. }) => {
                states.by_gid.remove(gid);
                PrepareAdmission::AlreadyAborted
            }
            Some(BranchState::Preparing { .. } | BranchState::Prepared(_)) => {
                PrepareAdmission::Duplicate
            }
            None => {
                states.by_gid.insert(
                    gid.to_string(),
                    BranchState::Preparing {
                        abort_requested: false,
                    },
                );
                PrepareAdmission::Go
            }
        }
    }

    /// Whether an Abort reached the Prepare of `gid` that is still running.
    pub fn abort_requested(&self, gid: &str) -> bool {
        matches!(
            self.states().by_gid.get(gid),
            Some(BranchState::Preparing {
                abort_requested: true
            })
        )
    }

    /// PREPARE TRANSACTION succeeded: the branch is registered as prepared. Returns whether an
    /// Abort arrived while preparing, in which case the caller must roll the branch back.
    pub fn prepared(&self, gid: &str, branch: PreparedBranch) -> bool {
        let mut states = self.states();
        let aborted = matches!(
            states.by_gid.get(gid),
            Some(BranchState::Preparing {
                abort_requested: true
            })
        );
        debug_assert!(
            matches!(states.by_gid.get(gid), Some(BranchState::Preparing { .. })),
            "only a preparing branch becomes prepared"
        );
        states
            .by_gid
            .insert(gid.to_string(), BranchState::Prepared(branch));
        aborted
    }

    /// The Prepare of `gid` ended without a prepared branch (refused, failed, or skipped).
    pub fn prepare_ended(&self, gid: &str) {
        let mut states = self.states();
        if matches!(states.by_gid.get(gid), Some(BranchState::Preparing { .. })) {
            states.by_gid.remove(gid);
        }
    }

    /// An Abort arrived for `gid`: whether the database has anything to roll back.
    pub fn abort_arrived(&self, gid: &str) -> AbortAction {
        let mut states = self.states();
        let now = Instant::now();
        states.expire_early_aborts(now);
        match states.by_gid.get_mut(gid) {
            Some(BranchState::Prepared(_)) => AbortAction::RollBack,
            Some(BranchState::Preparing { abort_requested }) => {
                *abort_requested = true;
                AbortAction::Noted
            }
            Some(BranchState::AbortedEarly { .. }) => AbortAction::Noted,
            None => {
                states
                    .by_gid
                    .insert(gid.to_string(), BranchState::AbortedEarly { at: now });
                states.early_aborts.push_back((now, gid.to_string()));
                AbortAction::Noted
            }
        }
    }

    /// Prepared branches waiting for longer than `after` (or recovered), excluding `busy`.
    pub fn in_doubt(
        &self,
        after: Duration,
        busy: &std::collections::HashSet<String>,
    ) -> Vec<String> {
        let now = Instant::now();
        self.states()
            .by_gid
            .iter()
            .filter_map(|(gid, state)| match state {
                BranchState::Prepared(b)
                    if (b.recovered || now.duration_since(b.prepared_at) >= after)
                        && !busy.contains(gid) =>
                {
                    Some(gid.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// How many branches are prepared here.
    pub fn len(&self) -> usize {
        self.states()
            .by_gid
            .values()
            .filter(|s| matches!(s, BranchState::Prepared(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_prepared(&self, gid: &str) -> bool {
        matches!(
            self.states().by_gid.get(gid),
            Some(BranchState::Prepared(_))
        )
    }

    /// Forgets a prepared branch once its decision is applied (or found applied already).
    fn decided(&self, gid: &str) -> Option<PreparedBranch> {
        let mut states = self.states();
        match states.by_gid.get(gid) {
            Some(BranchState::Prepared(branch)) => {
                let branch = *branch;
                states.by_gid.remove(gid);
                Some(branch)
            }
            _ => None,
        }
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
        // A simple query: a gid's statement is never reused, so preparing it would waste a trip.
        let applied = match self.pool.execute(statement.as_str()).await {
            Ok(_) => true,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(NO_SUCH_PREPARED) => false,
            Err(e) => return Err(e),
        };
        let released = Instant::now();
        let known = self.decided(gid);
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
        let mut states = self.states();
        let mut adopted = 0;
        for (name, age_secs) in &rows {
            let Some(gid) = name.strip_suffix(&suffix) else {
                continue;
            };
            // A branch still preparing is about to be registered by its preparer.
            if matches!(
                states.by_gid.get(gid),
                Some(BranchState::Prepared(_) | BranchState::Preparing { .. })
            ) {
                continue;
            }
            let since = now
                .checked_sub(Duration::from_secs_f64(age_secs.max(0.0)))
                .unwrap_or(now);
            states.by_gid.insert(
                gid.to_string(),
                BranchState::Prepared(PreparedBranch {
                    locked_at: since,
                    prepared_at: since,
                    recovered: true,
                }),
            );
            adopted += 1;
        }
        Ok(adopted)
    }
}

#[cfg(test)]
mod tests {
    //! The registry's transitions, traced without a database: the pool is never used by them.
    use super::*;

    fn registry() -> PreparedBranches {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool needs no server");
        PreparedBranches::new("order", pool, MetricsRegistry::new("test"))
    }

    fn branch() -> PreparedBranch {
        PreparedBranch {
            locked_at: Instant::now(),
            prepared_at: Instant::now(),
            recovered: false,
        }
    }

    #[tokio::test]
    async fn abort_before_prepare_stops_the_late_prepare() {
        let b = registry();
        assert_eq!(b.abort_arrived("g"), AbortAction::Noted);
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::AlreadyAborted);
        // Remembered once only: the gid is free again.
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Go);
    }

    #[tokio::test]
    async fn early_aborts_expire_in_arrival_order_and_only_their_own() {
        let b = registry();
        assert_eq!(b.abort_arrived("old"), AbortAction::Noted);
        assert_eq!(b.abort_arrived("reused"), AbortAction::Noted);
        // "reused" is consumed by its late Prepare, which then runs under the same gid again.
        assert_eq!(b.begin_prepare("reused"), PrepareAdmission::AlreadyAborted);
        assert_eq!(b.begin_prepare("reused"), PrepareAdmission::Go);
        let later = Instant::now() + EARLY_ABORT_KEPT;
        b.states().expire_early_aborts(later);
        let states = b.states();
        assert!(states.early_aborts.is_empty());
        assert!(!states.by_gid.contains_key("old"), "expired");
        assert!(
            matches!(
                states.by_gid.get("reused"),
                Some(BranchState::Preparing { .. })
            ),
            "a gid that moved on is not touched by its old Abort's expiry"
        );
    }

    #[tokio::test]
    async fn abort_while_preparing_makes_the_preparer_roll_back() {
        let b = registry();
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Go);
        assert!(!b.abort_requested("g"));
        assert_eq!(b.abort_arrived("g"), AbortAction::Noted);
        assert!(b.abort_requested("g"));
        assert!(b.prepared("g", branch()), "the preparer hears of the abort");
        assert!(b.is_prepared("g"), "prepared until its rollback is applied");
    }

    #[tokio::test]
    async fn abort_after_prepare_needs_a_rollback() {
        let b = registry();
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Go);
        assert!(!b.prepared("g", branch()));
        assert_eq!(b.abort_arrived("g"), AbortAction::RollBack);
        assert_eq!(b.len(), 1);
        assert_eq!(b.in_doubt(Duration::ZERO, &Default::default()), vec!["g"]);
    }

    #[tokio::test]
    async fn a_second_prepare_of_a_live_gid_is_refused() {
        let b = registry();
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Go);
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Duplicate);
        b.prepared("g", branch());
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Duplicate);
    }

    #[tokio::test]
    async fn a_prepare_that_ends_unprepared_leaves_nothing() {
        let b = registry();
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Go);
        b.prepare_ended("g");
        assert!(b.is_empty());
        assert!(b.in_doubt(Duration::ZERO, &Default::default()).is_empty());
        assert_eq!(b.begin_prepare("g"), PrepareAdmission::Go);
    }
}
