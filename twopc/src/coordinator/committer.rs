//! The coordinator's protocol driver: one global transaction from Prepare to the last
//! acknowledgement, following [`Phase`] transitions. It also answers participants' inquiries
//! from the phases of the transactions it holds, and from the log for the rest.

use super::ports::{DecisionRecords, Participant};
use super::transactions::{Held, Transactions};
use crate::branch::{to_branch, ServiceKind};
use crate::protocol::{client_outcome, Decision, Event, Phase, Tally, VoteResult};
use common::admission::{Admission, Slot};
use common::api::twopc_pb::Branch;
use common::api::unix_micros_now;
use common::domain::{Order, OutcomeKind, RejectReason};
use common::failpoint;
use common::metrics::MetricsRegistry;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fail point: the COMMIT record is durable, no Commit has been sent.
pub const AFTER_DECISION_LOGGED: &str = "coordinator-after-decision-logged";
/// Fail point: one participant acknowledged Commit, the others may not have it yet.
pub const AFTER_FIRST_COMMIT: &str = "coordinator-after-first-commit";

/// How Prepare reaches the participants.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PrepareOrder {
    /// All at once: one round trip, but two transactions can each hold locks at one participant
    /// while waiting at another — a distributed deadlock that only the prepare timeout breaks.
    Parallel,
    /// One after another in a fixed participant order (inventory, payment, order), stopping at
    /// the first NO: every transaction takes its locks in one global order, so no such cycle
    /// can form, at the price of a round trip per participant.
    Ordered,
}

/// The fixed participant order of [`PrepareOrder::Ordered`]: the most contended first.
const PREPARE_SEQUENCE: [ServiceKind; 3] = [
    ServiceKind::Inventory,
    ServiceKind::Payment,
    ServiceKind::Order,
];

/// What the client is told, with the moments that matter to the load generator.
#[derive(Clone, Debug)]
pub struct Placed {
    pub kind: OutcomeKind,
    pub reason: String,
    /// When the outcome became fixed (the COMMIT record forced, or the abort decided); 0 if never.
    pub decided_unix_us: u64,
}

#[derive(Clone)]
pub struct Committer {
    participants: Arc<Vec<Arc<dyn Participant>>>,
    log: Arc<dyn DecisionRecords>,
    metrics: MetricsRegistry,
    /// Transactions this process is driving, by gid: inquiries about them are answered from here.
    transactions: Transactions,
    prepare_timeout: Duration,
    prepare_order: PrepareOrder,
    /// Transactions admitted and not yet finished (last acknowledgement in): each may hold a
    /// prepared branch, and so locks and a `max_prepared_transactions` slot, at every participant.
    admission: Admission,
}

impl Committer {
    pub fn new(
        participants: Vec<Arc<dyn Participant>>,
        log: Arc<dyn DecisionRecords>,
        metrics: MetricsRegistry,
        prepare_timeout: Duration,
        prepare_order: PrepareOrder,
        max_in_flight: usize,
    ) -> Self {
        let mut participants = participants;
        participants.sort_by_key(|p| PREPARE_SEQUENCE.iter().position(|k| *k == p.service()));
        Committer {
            participants: Arc::new(participants),
            log,
            transactions: Transactions::default(),
            prepare_timeout,
            prepare_order,
            // An admitted transaction needs a whole prepare timeout before the client's deadline.
            admission: Admission::new(max_in_flight, prepare_timeout, "twopc", metrics.clone()),
            metrics,
        }
    }

    /// Runs the whole protocol for `order`, answering by `deadline` at the latest.
    pub async fn place(&self, order: &Order, deadline: Instant) -> Placed {
        let gid = order.id.to_string();
        // A second attempt while the first is in flight (checked again once admitted).
        if self.transactions.is_live(&gid) {
            // The first attempt may still commit: this one cannot know.
            return placed(
                OutcomeKind::Undecided,
                "this order is already being placed",
                0,
            );
        }
        let started = Instant::now();
        let Some(admitted) = self.admission.admit(deadline).await else {
            self.metrics.add(OutcomeKind::Aborted.as_str(), 1);
            return placed(
                OutcomeKind::Aborted,
                &self.admission.overloaded(),
                unix_micros_now(),
            );
        };
        if !self.transactions.begin(&gid) {
            return placed(
                OutcomeKind::Undecided,
                "this order is already being placed",
                0,
            );
        }
        let mut slot = Some(admitted);

        // Phase one: every participant votes; silence past the timeout is NO.
        let timeout = self
            .prepare_timeout
            .min(deadline.saturating_duration_since(started))
            .max(Duration::from_millis(1));
        let votes = self.collect_votes(&gid, &to_branch(order), timeout).await;
        self.metrics.record("prepare_phase", started.elapsed());
        let tally = Tally::of(&votes);
        let mut phase = self
            .transactions
            .advance(&gid, Event::Tallied(tally.decision()));

        if phase == Phase::LoggingCommit {
            let names: Vec<&str> = self
                .participants
                .iter()
                .map(|p| p.service().as_str())
                .collect();
            let forced = Instant::now();
            phase = match self.log.force_commit(&gid, order.id.0, &names).await {
                Ok(()) => self.transactions.advance(&gid, Event::CommitLogged),
                Err(_) => {
                    self.transactions.advance(&gid, Event::LogFailed);
                    self.resolve_unknown_log(&gid, deadline, &mut slot).await
                }
            };
            self.metrics.record("decision_wait", forced.elapsed());
        }
        let decided_unix_us = if matches!(phase, Phase::Committing | Phase::Aborting) {
            unix_micros_now()
        } else {
            0
        };
        if phase == Phase::Committing {
            failpoint::pass(AFTER_DECISION_LOGGED).await;
        }

        // Phase two: deliver the decision; the client waits for the acks until its deadline.
        if let Some(decision) = phase.inquiry_answer() {
            // The slot goes with the delivery: it is free once every branch is decided.
            let delivery = tokio::spawn(self.clone().deliver(gid.clone(), decision, slot.take()));
            let phase_two = Instant::now();
            let _ = tokio::time::timeout_at(deadline.into(), delivery).await;
            self.metrics.record(
                if decision == Decision::Commit {
                    "commit_phase"
                } else {
                    "abort_phase"
                },
                phase_two.elapsed(),
            );
        }
        let (mut kind, mut reason) = client_outcome(phase, &tally);
        if let Tally::Rejected {
            reason: RejectReason::DuplicateOrder,
            ..
        } = &tally
        {
            // A replayed order: its first attempt's fate is in the log (read only on this path,
            // so the protocol's own latency carries no extra round trip).
            match self.log.is_committed(&gid).await {
                Ok(true) => (kind, reason) = (OutcomeKind::Committed, "already committed".into()),
                Ok(false) => {}
                Err(err) => {
                    (kind, reason) = (
                        OutcomeKind::Undecided,
                        format!("decision log unreadable: {err}"),
                    )
                }
            }
        }
        self.metrics.record("total", started.elapsed());
        self.metrics.add(kind.as_str(), 1);
        placed(kind, &reason, decided_unix_us)
    }

    /// Sends Prepare as configured. In ordered mode a NO ends the round: the participants not
    /// asked hold nothing (an Abort still reaches them, harmlessly).
    async fn collect_votes(
        &self,
        gid: &str,
        branch: &Branch,
        timeout: Duration,
    ) -> Vec<(String, VoteResult)> {
        // Silence past the timeout is a NO, whatever the transport does.
        let vote = |p: &Arc<dyn Participant>| {
            let p = p.clone();
            let branch = branch.clone();
            async move {
                let name = p.service().as_str().to_string();
                let vote = tokio::time::timeout(timeout, p.prepare(gid, branch, timeout))
                    .await
                    .unwrap_or_else(|_| {
                        VoteResult::Failed(format!("no vote within {} ms", timeout.as_millis()))
                    });
                (name, vote)
            }
        };
        match self.prepare_order {
            PrepareOrder::Parallel => {
                futures::future::join_all(self.participants.iter().map(vote)).await
            }
            PrepareOrder::Ordered => {
                let mut votes = Vec::with_capacity(self.participants.len());
                for p in self.participants.iter() {
                    let (name, vote) = vote(p).await;
                    let yes = vote == VoteResult::Yes;
                    votes.push((name, vote));
                    if !yes {
                        break;
                    }
                }
                votes
            }
        }
    }

    /// The log failed mid-write (the transaction is Undetermined): read it until it answers or
    /// the deadline passes. Until then inquiries get UNKNOWN; never a guess. Past the deadline the
    /// client hears UNDECIDED and the resolution goes on in the background, which then owns the
    /// transaction's phase (and its admission slot).
    async fn resolve_unknown_log(
        &self,
        gid: &str,
        deadline: Instant,
        slot: &mut Option<Slot>,
    ) -> Phase {
        match self.read_log(gid, Some(deadline)).await {
            Some(found) => self.transactions.advance(gid, Event::LogResolved(found)),
            None => {
                tokio::spawn(
                    self.clone()
                        .finish_undetermined(gid.to_string(), slot.take()),
                );
                Phase::Undetermined
            }
        }
    }

    /// Whether the COMMIT record exists, asking until the log answers (or `deadline` passes).
    async fn read_log(&self, gid: &str, deadline: Option<Instant>) -> Option<bool> {
        let mut backoff =
            common::retry::Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
        loop {
            match self.log.is_committed(gid).await {
                Ok(found) => return Some(found),
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => return None,
                Err(_) => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
    }

    async fn finish_undetermined(self, gid: String, slot: Option<Slot>) {
        let Some(found) = self.read_log(&gid, None).await else {
            return;
        };
        let phase = self.transactions.advance(&gid, Event::LogResolved(found));
        if let Some(decision) = phase.inquiry_answer() {
            self.deliver(gid, decision, slot).await;
        }
    }

    /// Sends `decision` to every participant until all acknowledge, then ends the transaction.
    /// `slot`, the transaction's admission, is held until then.
    async fn deliver(self, gid: String, decision: Decision, slot: Option<Slot>) {
        let mut acks: FuturesUnordered<_> = self
            .participants
            .iter()
            .map(|p| p.deliver_decision(&gid, decision))
            .collect();
        let mut first = true;
        while acks.next().await.is_some() {
            if first && decision == Decision::Commit {
                failpoint::pass(AFTER_FIRST_COMMIT).await;
            }
            first = false;
        }
        drop(acks);
        if decision == Decision::Commit {
            self.log.mark_complete(&gid);
        }
        self.transactions.advance(&gid, Event::AllAcknowledged);
        drop(slot);
    }

    /// Re-drives a logged COMMIT found without END at start-up. The phase is set before this
    /// returns (the delivery runs in the background), so that no request served afterwards can
    /// start a second attempt of the same order while its branches are still prepared.
    pub fn recover(&self, gid: String) {
        self.transactions.adopt_logged_commit(&gid);
        self.metrics.add("recovered_commits", 1);
        tokio::spawn(self.clone().deliver(gid, Decision::Commit, None));
    }

    /// The answer to a participant's inquiry. `None` means "ask again later".
    pub async fn inquiry(&self, gid: &str) -> Option<Decision> {
        self.metrics.add("inquiries", 1);
        match self.transactions.held(gid) {
            Held::Live(answer) => answer,
            // Not in flight here: the log decides. Presumed abort: no record, no commit.
            Held::NotHeld => match self.log.is_committed(gid).await {
                Ok(true) => Some(Decision::Commit),
                Ok(false) => Some(Decision::Abort),
                Err(_) => None,
            },
        }
    }
}

fn placed(kind: OutcomeKind, reason: &str, decided_unix_us: u64) -> Placed {
    Placed {
        kind,
        reason: reason.to_string(),
        decided_unix_us,
    }
}

#[cfg(test)]
mod tests;
