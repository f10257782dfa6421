//! The protocol engine of presumed-abort 2PC, apart from transport and storage: how votes become
//! a decision, how a decision becomes the client's outcome, and the phases a global transaction
//! passes through. The coordinator drives these; unit tests check them without a network.

use common::domain::{OutcomeKind, RejectReason};

/// One participant's answer to Prepare, as the coordinator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Prepared: durable and holding its locks.
    Yes,
    /// A business rule refused (e.g. insufficient funds).
    BusinessNo(RejectReason),
    /// The branch failed, or the participant was unreachable or too slow: also a NO.
    Failed(String),
}

/// The global decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Commit,
    Abort,
}

/// Why the votes decided as they did, for the client's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tally {
    AllYes,
    /// At least one business refusal (reported even if others also failed), and who refused.
    Rejected {
        participant: String,
        reason: RejectReason,
    },
    /// No business refusal, but a failure or timeout.
    Failed(String),
}

impl Tally {
    /// Counts the votes: unanimity commits; any NO aborts. A business reason wins over a failure
    /// as the reported cause, so that an order that could never succeed reads REJECTED.
    pub fn of(votes: &[(String, VoteResult)]) -> Tally {
        if let Some((who, VoteResult::BusinessNo(reason))) = votes
            .iter()
            .find(|(_, v)| matches!(v, VoteResult::BusinessNo(_)))
        {
            return Tally::Rejected {
                participant: who.clone(),
                reason: *reason,
            };
        }
        if let Some((who, VoteResult::Failed(reason))) = votes
            .iter()
            .find(|(_, v)| matches!(v, VoteResult::Failed(_)))
        {
            return Tally::Failed(format!("{who}: {reason}"));
        }
        Tally::AllYes
    }

    pub fn decision(&self) -> Decision {
        match self {
            Tally::AllYes => Decision::Commit,
            Tally::Rejected { .. } | Tally::Failed(_) => Decision::Abort,
        }
    }
}

/// Where a global transaction stands at the coordinator. Transitions happen only through
/// [`Phase::next`]; anything else is a bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Prepare sent; votes being collected. Inquiries are answered UNKNOWN.
    Preparing,
    /// All voted YES; the COMMIT record is being forced to the log.
    LoggingCommit,
    /// The COMMIT record is durable: the outcome is COMMITTED, whatever happens next.
    Committing,
    /// Some vote was NO: nothing is logged (presumed abort); Abort is being sent.
    Aborting,
    /// Whether the COMMIT record became durable is unknown (the log failed mid-write).
    Undetermined,
    /// Every participant acknowledged the decision.
    Done,
}

/// What moves a transaction from one phase to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Tallied(Decision),
    CommitLogged,
    LogFailed,
    /// A later read of the log found (true) or did not find (false) the COMMIT record.
    LogResolved(bool),
    AllAcknowledged,
}

impl Phase {
    pub fn next(self, event: Event) -> Phase {
        match (self, event) {
            (Phase::Preparing, Event::Tallied(Decision::Commit)) => Phase::LoggingCommit,
            (Phase::Preparing, Event::Tallied(Decision::Abort)) => Phase::Aborting,
            (Phase::LoggingCommit, Event::CommitLogged) => Phase::Committing,
            (Phase::LoggingCommit, Event::LogFailed) => Phase::Undetermined,
            (Phase::Undetermined, Event::LogResolved(true)) => Phase::Committing,
            (Phase::Undetermined, Event::LogResolved(false)) => Phase::Aborting,
            (Phase::Committing | Phase::Aborting, Event::AllAcknowledged) => Phase::Done,
            (phase, event) => panic!("2PC protocol bug: {event:?} in phase {phase:?}"),
        }
    }

    /// The answer to a participant's `Decision(gid)` inquiry while the coordinator holds the
    /// transaction in this phase. Only a durable COMMIT record is ever answered COMMIT.
    pub fn inquiry_answer(self) -> Option<Decision> {
        match self {
            Phase::Committing => Some(Decision::Commit),
            Phase::Aborting => Some(Decision::Abort),
            Phase::Preparing | Phase::LoggingCommit | Phase::Undetermined => None,
            Phase::Done => None,
        }
    }
}

/// The client's outcome for a transaction that reached `phase` after `tally`.
pub fn client_outcome(phase: Phase, tally: &Tally) -> (OutcomeKind, String) {
    match (phase, tally) {
        (Phase::Committing, Tally::AllYes) => (OutcomeKind::Committed, String::new()),
        (
            Phase::Aborting,
            Tally::Rejected {
                participant,
                reason,
            },
        ) => (
            OutcomeKind::Rejected,
            format!("{} (at {participant})", reason.to_text()),
        ),
        (Phase::Aborting, Tally::Failed(reason)) => (OutcomeKind::Aborted, reason.clone()),
        (Phase::Aborting, Tally::AllYes) => (
            OutcomeKind::Aborted,
            "the commit record was not written".into(),
        ),
        (Phase::Undetermined | Phase::LoggingCommit, _) => (
            OutcomeKind::Undecided,
            "the decision log did not answer; recovery will finish it".into(),
        ),
        (phase, tally) => panic!("2PC protocol bug: no outcome for {tally:?} in phase {phase:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(v: &[VoteResult]) -> Vec<(String, VoteResult)> {
        ["order", "payment", "inventory"]
            .iter()
            .zip(v)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn unanimity_commits_any_no_aborts_business_reason_wins() {
        assert_eq!(
            Tally::of(&votes(&[VoteResult::Yes, VoteResult::Yes, VoteResult::Yes])),
            Tally::AllYes
        );
        let t = Tally::of(&votes(&[
            VoteResult::Failed("timeout".into()),
            VoteResult::BusinessNo(RejectReason::InsufficientFunds),
            VoteResult::Yes,
        ]));
        assert_eq!(
            t,
            Tally::Rejected {
                participant: "payment".into(),
                reason: RejectReason::InsufficientFunds
            }
        );
        assert_eq!(t.decision(), Decision::Abort);
        let t = Tally::of(&votes(&[
            VoteResult::Yes,
            VoteResult::Yes,
            VoteResult::Failed("unreachable".into()),
        ]));
        assert_eq!(t, Tally::Failed("inventory: unreachable".into()));
    }

    #[test]
    fn phases_and_outcomes() {
        let committed = Phase::Preparing
            .next(Event::Tallied(Decision::Commit))
            .next(Event::CommitLogged);
        assert_eq!(committed, Phase::Committing);
        assert_eq!(committed.inquiry_answer(), Some(Decision::Commit));
        assert_eq!(
            client_outcome(committed, &Tally::AllYes).0,
            OutcomeKind::Committed
        );

        let unsure = Phase::Preparing
            .next(Event::Tallied(Decision::Commit))
            .next(Event::LogFailed);
        assert_eq!(
            unsure.inquiry_answer(),
            None,
            "never guess while the log is unknown"
        );
        assert_eq!(
            client_outcome(unsure, &Tally::AllYes).0,
            OutcomeKind::Undecided
        );
        assert_eq!(unsure.next(Event::LogResolved(false)), Phase::Aborting);
        assert_eq!(
            client_outcome(Phase::Aborting, &Tally::AllYes).0,
            OutcomeKind::Aborted
        );

        assert_eq!(Phase::Preparing.inquiry_answer(), None);
        let rejected = Phase::Preparing.next(Event::Tallied(Decision::Abort));
        assert_eq!(
            client_outcome(
                rejected,
                &Tally::Rejected {
                    participant: "order".into(),
                    reason: RejectReason::DuplicateOrder
                }
            )
            .0,
            OutcomeKind::Rejected
        );
    }

    #[test]
    #[should_panic(expected = "protocol bug")]
    fn commit_without_log_is_a_bug() {
        Phase::Preparing.next(Event::CommitLogged);
    }
}
