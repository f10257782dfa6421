//! What the committer needs from the world, as two small traits: the participants (a vote; a
//! decision delivered until acknowledged) and the decision log (force a COMMIT record, read it,
//! queue END). gRPC ([`super::participants::ParticipantLink`]) and PostgreSQL
//! ([`super::decision_log::DecisionLog`]) implement them in production; the committer's
//! protocol traces implement them in memory, so its logic is tested without a network or a
//! database.

use crate::branch::ServiceKind;
use crate::protocol::{Decision, VoteResult};
use common::api::twopc_pb::Branch;
use futures::future::BoxFuture;
use std::time::Duration;

/// One participant as the coordinator sees it.
pub trait Participant: Send + Sync + 'static {
    fn service(&self) -> ServiceKind;

    /// Asks for a vote on `branch`. The committer stops waiting after `timeout` (silence is a
    /// NO); `timeout` is passed on so the participant can give up at the same moment.
    fn prepare<'a>(
        &'a self,
        gid: &'a str,
        branch: Branch,
        timeout: Duration,
    ) -> BoxFuture<'a, VoteResult>;

    /// Sends `decision` until the participant acknowledges it; never gives up.
    fn deliver_decision<'a>(&'a self, gid: &'a str, decision: Decision) -> BoxFuture<'a, ()>;
}

/// The coordinator's durable decisions (presumed abort: only COMMIT is ever written).
pub trait DecisionRecords: Send + Sync + 'static {
    /// Forces a COMMIT record. `Ok`: durable. `Err`: unknown (the write may have landed), so
    /// the caller must read the log before deciding anything.
    fn force_commit<'a>(
        &'a self,
        gid: &'a str,
        order_id: uuid::Uuid,
        participants: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Whether a COMMIT record exists (`Err` when the log cannot be read).
    fn is_committed<'a>(&'a self, gid: &'a str) -> BoxFuture<'a, Result<bool, String>>;

    /// Queues the END record of `gid` (not forced).
    fn mark_complete(&self, gid: &str);
}
