//! The phases of the transactions this coordinator is driving, by gid: the one owner of every
//! phase. A phase changes only through [`Transactions::advance`], which applies
//! [`Phase::next`] to the phase held here under one lock (compare and transition), never to a
//! caller's copy; a transaction leaves when it reaches [`Phase::Done`].

use crate::protocol::{Decision, Event, Phase};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Transactions {
    phases: Arc<Mutex<HashMap<String, Phase>>>,
}

/// What the coordinator knows of a gid, for a participant's inquiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Being driven here: the phase's answer (`None`: ask again later).
    Live(Option<Decision>),
    /// Not in flight here: the decision log decides.
    NotHeld,
}

impl Transactions {
    fn phases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Phase>> {
        self.phases.lock().expect("phases lock")
    }

    /// Starts `gid` in [`Phase::Preparing`]; `false` if it is in flight already.
    pub fn begin(&self, gid: &str) -> bool {
        let mut phases = self.phases();
        if phases.contains_key(gid) {
            return false;
        }
        phases.insert(gid.to_string(), Phase::Preparing);
        true
    }

    pub fn is_live(&self, gid: &str) -> bool {
        self.phases().contains_key(gid)
    }

    /// Applies `event` to `gid`'s phase and returns the new one.
    pub fn advance(&self, gid: &str, event: Event) -> Phase {
        let mut phases = self.phases();
        let Some(phase) = phases.get(gid).copied() else {
            panic!("2PC protocol bug: {event:?} for {gid}, which is not in flight");
        };
        let next = phase.next(event);
        if next == Phase::Done {
            phases.remove(gid);
        } else {
            phases.insert(gid.to_string(), next);
        }
        next
    }

    /// A COMMIT record without END found at start-up: the transaction is re-driven from
    /// [`Phase::Committing`], the phase its record proves.
    pub fn adopt_logged_commit(&self, gid: &str) {
        let previous = self.phases().insert(gid.to_string(), Phase::Committing);
        debug_assert!(previous.is_none(), "recovery runs before any request");
    }

    pub fn held(&self, gid: &str) -> Held {
        match self.phases().get(gid) {
            Some(phase) => Held::Live(phase.inquiry_answer()),
            None => Held::NotHeld,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Protocol traces, without a network or a database.
    use super::*;

    #[test]
    fn a_commit_is_answered_commit_only_once_logged_and_leaves_when_acknowledged() {
        let t = Transactions::default();
        assert!(t.begin("g"));
        assert!(!t.begin("g"), "one attempt at a time");
        assert_eq!(t.held("g"), Held::Live(None));
        assert_eq!(
            t.advance("g", Event::Tallied(Decision::Commit)),
            Phase::LoggingCommit
        );
        assert_eq!(t.held("g"), Held::Live(None), "not durable yet: ask later");
        assert_eq!(t.advance("g", Event::CommitLogged), Phase::Committing);
        assert_eq!(t.held("g"), Held::Live(Some(Decision::Commit)));
        assert_eq!(t.advance("g", Event::AllAcknowledged), Phase::Done);
        assert_eq!(t.held("g"), Held::NotHeld, "the log answers from here");
        assert!(t.begin("g"), "a later attempt may start");
    }

    #[test]
    fn a_lost_log_write_stays_unanswered_until_the_log_is_read() {
        let t = Transactions::default();
        t.begin("g");
        t.advance("g", Event::Tallied(Decision::Commit));
        assert_eq!(t.advance("g", Event::LogFailed), Phase::Undetermined);
        assert_eq!(t.held("g"), Held::Live(None));
        assert_eq!(t.advance("g", Event::LogResolved(false)), Phase::Aborting);
        assert_eq!(t.held("g"), Held::Live(Some(Decision::Abort)));
    }

    #[test]
    fn a_recovered_commit_is_answered_commit_at_once() {
        let t = Transactions::default();
        t.adopt_logged_commit("g");
        assert_eq!(t.held("g"), Held::Live(Some(Decision::Commit)));
        assert!(
            !t.begin("g"),
            "no second attempt while its branches are prepared"
        );
        assert_eq!(t.advance("g", Event::AllAcknowledged), Phase::Done);
    }

    #[test]
    #[should_panic(expected = "protocol bug")]
    fn an_event_out_of_order_is_a_bug() {
        let t = Transactions::default();
        t.begin("g");
        t.advance("g", Event::CommitLogged);
    }
}
