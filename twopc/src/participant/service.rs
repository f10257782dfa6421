//! The participant's gRPC face: Prepare runs the branch and `PREPARE TRANSACTION`; Commit and
//! Abort apply the decision.

use super::prepared::{AbortAction, DecidedBy, PrepareAdmission, PreparedBranch, PreparedBranches};
use crate::branch::{self, ServiceKind};
use crate::protocol::Decision;
use common::api::twopc_pb::{
    participant_server::Participant, Ack, GidRequest, PrepareRequest, Vote, VoteKind,
};
use common::domain::RejectReason;
use common::failpoint;
use common::metrics::MetricsRegistry;
use common::storage::quote_literal;
use sqlx::Executor;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Fail point: the branch is prepared (durable, locks held) but the vote is not yet sent.
pub const AFTER_PREPARE_BEFORE_VOTE: &str = "participant-after-prepare-before-vote";
/// Fail point: a Commit arrived but is not yet applied (a slow participant; the RPC can still be
/// cancelled here, e.g. by the coordinator's death).
pub const BEFORE_COMMIT: &str = "participant-before-commit";

#[derive(Clone)]
pub struct ParticipantService {
    pub service: ServiceKind,
    pub pool: PgPool,
    pub branches: PreparedBranches,
    pub metrics: MetricsRegistry,
}

/// SQLSTATE 55P03: `lock_timeout` expired while waiting for a row lock.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How a branch ended its local transaction.
enum BranchResult {
    /// Prepared: durable, every lock held since `locked_at`.
    Prepared { locked_at: Instant },
    /// Rolled back: a business rule refused.
    Refused(RejectReason),
}

fn vote_no_message(reason: impl Into<String>, business: bool) -> Vote {
    Vote {
        vote: VoteKind::No as i32,
        reason: reason.into(),
        business,
    }
}

impl ParticipantService {
    /// Runs one Prepare within `budget` (the coordinator's wait for this vote, from `received`).
    /// Work the coordinator can no longer use is skipped: a Prepare whose Abort came first, or
    /// that got no connection within its budget, votes NO without touching the database, so an
    /// overloaded participant does not spend its capacity on transactions already given up.
    async fn prepare_branch(
        &self,
        gid: &str,
        req: &PrepareRequest,
        received: Instant,
    ) -> Result<Vote, sqlx::Error> {
        let order = match req.branch.as_ref().map(branch::from_branch) {
            Some(Ok(order)) => order,
            Some(Err(reason)) => return Ok(vote_no_message(reason, false)),
            None => return Ok(vote_no_message("branch: missing", false)),
        };
        match self.branches.begin_prepare(gid) {
            PrepareAdmission::Go => {}
            PrepareAdmission::AlreadyAborted => {
                self.metrics.add("prepare_skipped", 1);
                return Ok(vote_no_message("aborted before the prepare began", false));
            }
            PrepareAdmission::Duplicate => {
                return Ok(vote_no_message(
                    "this branch is already preparing or prepared",
                    false,
                ))
            }
        }
        let voted = self.prepare_admitted(gid, req, &order, received).await;
        if !matches!(&voted, Ok(vote) if vote.vote() == VoteKind::Yes) {
            self.branches.prepare_ended(gid);
        }
        voted
    }

    async fn prepare_admitted(
        &self,
        gid: &str,
        req: &PrepareRequest,
        order: &common::domain::Order,
        received: Instant,
    ) -> Result<Vote, sqlx::Error> {
        let budget = Duration::from_millis(req.timeout_ms.max(1).into());
        let remaining = budget.saturating_sub(received.elapsed());
        let Ok(conn) = tokio::time::timeout(remaining, self.pool.acquire()).await else {
            self.metrics.add("prepare_skipped", 1);
            return Ok(vote_no_message(
                format!(
                    "no connection within the coordinator's {} ms",
                    req.timeout_ms
                ),
                false,
            ));
        };
        let mut conn = conn?;
        if self.branches.abort_requested(gid) {
            self.metrics.add("prepare_skipped", 1);
            return Ok(vote_no_message(
                "aborted while waiting for a connection",
                false,
            ));
        }
        let begun = Instant::now();
        let lock_budget = budget.saturating_sub(received.elapsed());
        // BEGIN and PREPARE TRANSACTION are plain statements here, not sqlx's transaction guard:
        // PREPARE TRANSACTION ends the block itself, which the guard could not know.
        match self
            .run_branch(&mut conn, gid, order, lock_budget, begun)
            .await
        {
            Ok(BranchResult::Prepared { locked_at }) => self.after_prepared(gid, locked_at).await,
            Ok(BranchResult::Refused(reason)) => {
                self.metrics.add("voted_no", 1);
                Ok(vote_no_message(reason.as_str(), true))
            }
            Err(err) => {
                // The connection may be inside a failed transaction: never hand it back so.
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    let _ = conn.close().await;
                }
                // A lost connection may have lost PREPARE's reply after it succeeded: we vote NO,
                // so roll back a branch of that name if there is one. (Not after a database
                // error: "identifier already in use" names an earlier attempt's live branch.)
                if !matches!(err, sqlx::Error::Database(_)) {
                    let name = quote_literal(&self.branches.pg_gid(gid));
                    let _ = self
                        .pool
                        .execute(format!("ROLLBACK PREPARED {name}").as_str())
                        .await;
                }
                Err(err)
            }
        }
    }

    /// Runs the branch up to PREPARE TRANSACTION, or rolls it back after a business refusal.
    async fn run_branch(
        &self,
        conn: &mut sqlx::PgConnection,
        gid: &str,
        order: &common::domain::Order,
        lock_budget: Duration,
        begun: Instant,
    ) -> Result<BranchResult, sqlx::Error> {
        // Give up on locks a little before the coordinator gives up on the vote, so the NO says
        // why. One simple query for both: a round trip less per branch.
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = {}",
            (lock_budget.as_millis() * 4 / 5).max(1)
        );
        (&mut *conn).execute(begin.as_str()).await?;
        let mut clock = branch::LockClock::default();
        let applied = branch::apply(self.service, conn, order, &mut clock).await;
        // From the lock request (not from BEGIN); waits that end in lock_timeout count too:
        // they are the worst ones. A replay found before any lock request waited for none.
        if let Some(requested) = clock.requested {
            self.metrics.record(
                "lock_wait",
                clock.granted.unwrap_or_else(Instant::now) - requested,
            );
        }
        if matches!(&applied, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
        {
            self.metrics.add("lock_timeouts", 1);
        }
        let refusal = applied?;
        let locked_at = clock.granted.unwrap_or(begun);
        if let Some(reason) = refusal {
            sqlx::query("ROLLBACK").execute(&mut *conn).await?;
            // A refused branch held its locks too, until this rollback (an unknown customer's
            // branch found no row to lock; a replay found before locking took none).
            if clock.granted.is_some() && reason != RejectReason::UnknownCustomer {
                self.metrics.record("lock_hold", locked_at.elapsed());
            }
            tracing::debug!(gid, reason = reason.as_str(), "business refusal");
            return Ok(BranchResult::Refused(reason));
        }
        // The branch is now durable and owned by PostgreSQL, locks held, whatever happens to
        // this process.
        let name = self.branches.pg_gid(gid);
        // Simple query: a statement named by its gid is never reused, so preparing it (as
        // `sqlx::query` does) would cost a round trip and a cache eviction for nothing.
        let prepare = format!("PREPARE TRANSACTION {}", quote_literal(&name));
        (&mut *conn).execute(prepare.as_str()).await?;
        Ok(BranchResult::Prepared { locked_at })
    }

    async fn after_prepared(&self, gid: &str, locked_at: Instant) -> Result<Vote, sqlx::Error> {
        let abort_arrived = self.branches.prepared(
            gid,
            PreparedBranch {
                locked_at,
                prepared_at: Instant::now(),
                recovered: false,
            },
        );
        self.metrics.add("prepared", 1);
        if abort_arrived {
            self.branches
                .decide(gid, Decision::Abort, DecidedBy::Coordinator)
                .await?;
            return Ok(vote_no_message("aborted before the vote", false));
        }
        failpoint::pass(AFTER_PREPARE_BEFORE_VOTE).await;
        Ok(Vote {
            vote: VoteKind::Yes as i32,
            reason: String::new(),
            business: false,
        })
    }
}

#[tonic::async_trait]
impl Participant for ParticipantService {
    #[tracing::instrument(skip_all, fields(gid = %request.get_ref().gid, service = self.service.as_str()))]
    async fn prepare(&self, request: Request<PrepareRequest>) -> Result<Response<Vote>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        if req.gid.is_empty() || req.gid.len() > 200 {
            return Err(Status::invalid_argument("gid: must be 1 to 200 characters"));
        }
        // The branch runs in its own task: if the coordinator gives up and the RPC is dropped, the
        // branch still ends cleanly (prepared and registered, or rolled back), never half-done.
        let this = self.clone();
        let outcome =
            tokio::spawn(async move { this.prepare_branch(&req.gid, &req, started).await })
                .await
                .map_err(|e| Status::internal(format!("prepare task failed: {e}")))?;
        let vote = match outcome {
            Ok(vote) => Response::new(vote),
            Err(err) => {
                tracing::warn!(cause = %err, "prepare failed; voting NO");
                self.metrics.add("prepare_failed", 1);
                Response::new(vote_no_message(
                    format!("{} prepare failed: {err}", self.service.as_str()),
                    false,
                ))
            }
        };
        self.metrics.record("prepare", started.elapsed());
        Ok(vote)
    }

    #[tracing::instrument(skip_all, fields(gid = %request.get_ref().gid, service = self.service.as_str()))]
    async fn commit(&self, request: Request<GidRequest>) -> Result<Response<Ack>, Status> {
        let gid = request.into_inner().gid;
        failpoint::pass(BEFORE_COMMIT).await;
        let branches = self.branches.clone();
        // Not cancelled with the RPC: a decision once started is applied and accounted for.
        tokio::spawn(async move {
            branches
                .decide(&gid, Decision::Commit, DecidedBy::Coordinator)
                .await
        })
        .await
        .map_err(|e| Status::internal(format!("commit task failed: {e}")))?
        .map_err(|e| Status::unavailable(format!("COMMIT PREPARED failed: {e}")))?;
        Ok(Response::new(Ack {}))
    }

    #[tracing::instrument(skip_all, fields(gid = %request.get_ref().gid, service = self.service.as_str()))]
    async fn abort(&self, request: Request<GidRequest>) -> Result<Response<Ack>, Status> {
        let gid = request.into_inner().gid;
        if self.branches.abort_arrived(&gid) == AbortAction::Noted {
            // Nothing prepared here: a Prepare still running (or not begun) rolls itself back
            // or never runs. No database round trip, which matters when a coordinator aborts
            // many transactions at once (overload, a partition).
            self.metrics.add("abort_without_branch", 1);
            return Ok(Response::new(Ack {}));
        }
        let branches = self.branches.clone();
        tokio::spawn(async move {
            branches
                .decide(&gid, Decision::Abort, DecidedBy::Coordinator)
                .await
        })
        .await
        .map_err(|e| Status::internal(format!("abort task failed: {e}")))?
        .map_err(|e| Status::unavailable(format!("ROLLBACK PREPARED failed: {e}")))?;
        Ok(Response::new(Ack {}))
    }
}
