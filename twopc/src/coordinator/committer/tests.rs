//! Protocol traces of the committer, without a network or a database: in-memory participants
//! and decision log write what happens to one shared trace, and each test reads the trace as
//! the protocol's story (prepare, vote, force the record, deliver), as toydb's golden scripts do.

use super::*;
use crate::coordinator::ports::{DecisionRecords, Participant};
use common::domain::{Cents, CustomerId, OrderId, OrderLine, Sku};
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::sync::Mutex;

/// Everything that happened, in order.
#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<String>>>);

impl Trace {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// Position of the first line equal to `line`.
    fn at(&self, line: &str) -> usize {
        self.lines()
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} never happened: {:?}", self.lines()))
    }
}

/// How a participant answers Prepare.
#[derive(Clone)]
enum Vote {
    Yes,
    No(RejectReason),
    /// The reply is lost: the participant never answers.
    Lost,
}

struct FakeParticipant {
    service: ServiceKind,
    vote: Vote,
    trace: Trace,
}

impl Participant for FakeParticipant {
    fn service(&self) -> ServiceKind {
        self.service
    }

    fn prepare<'a>(&'a self, _: &'a str, _: Branch, _: Duration) -> BoxFuture<'a, VoteResult> {
        let name = self.service.as_str();
        self.trace.push(format!("prepare {name}"));
        Box::pin(async move {
            match &self.vote {
                Vote::Yes => VoteResult::Yes,
                Vote::No(reason) => VoteResult::BusinessNo(*reason),
                Vote::Lost => futures::future::pending().await,
            }
        })
    }

    fn deliver_decision<'a>(&'a self, _: &'a str, decision: Decision) -> BoxFuture<'a, ()> {
        let line = format!("{decision:?} {}", self.service.as_str()).to_lowercase();
        self.trace.push(line);
        Box::pin(async {})
    }
}

/// A decision log in memory. `failing_writes`: how many COMMIT writes report an error, and
/// whether such a write still landed (the ambiguous case a broken connection makes).
#[derive(Default)]
struct FakeLog {
    committed: Mutex<HashSet<String>>,
    failing_writes: Mutex<Option<bool>>,
    unreadable: Mutex<bool>,
    trace: Trace,
}

impl DecisionRecords for FakeLog {
    fn force_commit<'a>(
        &'a self,
        gid: &'a str,
        _: uuid::Uuid,
        _: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.failing_writes.lock().unwrap().take() {
                Some(landed) => {
                    if landed {
                        self.committed.lock().unwrap().insert(gid.to_string());
                    }
                    self.trace.push("log commit: error".into());
                    Err("connection reset during COMMIT".into())
                }
                None => {
                    self.committed.lock().unwrap().insert(gid.to_string());
                    self.trace.push("log commit".into());
                    Ok(())
                }
            }
        })
    }

    fn is_committed<'a>(&'a self, gid: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            if *self.unreadable.lock().unwrap() {
                return Err("log unreachable".into());
            }
            Ok(self.committed.lock().unwrap().contains(gid))
        })
    }

    fn mark_complete(&self, _: &str) {
        self.trace.push("log end".into());
    }
}

struct Lab {
    committer: Committer,
    log: Arc<FakeLog>,
    trace: Trace,
}

/// A committer over fake inventory, payment and order participants voting `votes` (in that
/// order), preparing one after another so that the trace is deterministic.
fn lab(votes: [Vote; 3]) -> Lab {
    let trace = Trace::default();
    let services = [
        ServiceKind::Inventory,
        ServiceKind::Payment,
        ServiceKind::Order,
    ];
    let participants = services
        .into_iter()
        .zip(votes)
        .map(|(service, vote)| {
            Arc::new(FakeParticipant {
                service,
                vote,
                trace: trace.clone(),
            }) as Arc<dyn Participant>
        })
        .collect();
    let log = Arc::new(FakeLog {
        trace: trace.clone(),
        ..FakeLog::default()
    });
    let committer = Committer::new(
        participants,
        log.clone(),
        MetricsRegistry::new("test"),
        Duration::from_millis(200),
        PrepareOrder::Ordered,
        4,
    );
    Lab {
        committer,
        log,
        trace,
    }
}

fn order() -> Order {
    let line = OrderLine {
        sku: Sku(1),
        qty: 1,
        unit_price: Cents(500),
    };
    Order::new(OrderId::new_random(), CustomerId(7), vec![line]).expect("a valid order")
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn all_yes_forces_the_record_before_any_commit_is_sent() {
    let lab = lab([Vote::Yes, Vote::Yes, Vote::Yes]);
    let placed = lab.committer.place(&order(), deadline()).await;
    assert_eq!(placed.kind, OutcomeKind::Committed, "{placed:?}");
    let trace = lab.trace;
    assert_eq!(
        trace.lines()[..4],
        [
            "prepare inventory",
            "prepare payment",
            "prepare order",
            "log commit"
        ]
    );
    for service in ["inventory", "payment", "order"] {
        assert!(trace.at("log commit") < trace.at(&format!("commit {service}")));
    }
    assert!(
        trace.at("commit order") < trace.at("log end"),
        "END only after every ack"
    );
}

#[tokio::test]
async fn a_business_no_stops_the_round_and_aborts_everyone_without_a_record() {
    let lab = lab([
        Vote::Yes,
        Vote::No(RejectReason::InsufficientFunds),
        Vote::Yes,
    ]);
    let order = order();
    let placed = lab.committer.place(&order, deadline()).await;
    assert_eq!(placed.kind, OutcomeKind::Rejected, "{placed:?}");
    assert!(placed.reason.contains("(at payment)"), "{placed:?}");
    let lines = lab.trace.lines();
    assert_eq!(lines[..2], ["prepare inventory", "prepare payment"]);
    assert!(
        !lines.contains(&"prepare order".to_string()),
        "the round stopped: {lines:?}"
    );
    for service in ["inventory", "payment", "order"] {
        lab.trace.at(&format!("abort {service}"));
    }
    assert!(
        lab.log.committed.lock().unwrap().is_empty(),
        "presumed abort writes nothing"
    );
    assert_eq!(
        lab.committer.inquiry(&order.id.to_string()).await,
        Some(Decision::Abort)
    );
}

#[tokio::test]
async fn a_lost_vote_is_a_no_once_the_prepare_timeout_passes() {
    let lab = lab([Vote::Yes, Vote::Lost, Vote::Yes]);
    let started = Instant::now();
    let placed = lab.committer.place(&order(), deadline()).await;
    assert_eq!(placed.kind, OutcomeKind::Aborted, "{placed:?}");
    assert!(
        placed.reason.contains("no vote within 200 ms"),
        "{placed:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    lab.trace.at("abort payment");
    assert!(lab.log.committed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_commit_write_that_errs_is_read_back_before_anything_is_decided() {
    // The write landed although the log reported an error: the transaction commits.
    let landed = lab([Vote::Yes, Vote::Yes, Vote::Yes]);
    *landed.log.failing_writes.lock().unwrap() = Some(true);
    let placed = landed.committer.place(&order(), deadline()).await;
    assert_eq!(placed.kind, OutcomeKind::Committed, "{placed:?}");
    assert!(landed.trace.at("log commit: error") < landed.trace.at("commit inventory"));

    // It did not land: the transaction aborts, and every participant hears so.
    let lost = lab([Vote::Yes, Vote::Yes, Vote::Yes]);
    *lost.log.failing_writes.lock().unwrap() = Some(false);
    let placed = lost.committer.place(&order(), deadline()).await;
    assert_eq!(placed.kind, OutcomeKind::Aborted, "{placed:?}");
    for service in ["inventory", "payment", "order"] {
        lost.trace.at(&format!("abort {service}"));
    }
}

#[tokio::test]
async fn after_a_crash_a_logged_commit_is_driven_to_every_participant() {
    // The coordinator restarted with a COMMIT record and no END: recovery re-sends Commit.
    let lab = lab([Vote::Yes, Vote::Yes, Vote::Yes]);
    lab.log.committed.lock().unwrap().insert("g1".into());
    lab.committer.recover("g1".into());
    // An inquiry right away is answered from the held phase, not guessed.
    assert_eq!(lab.committer.inquiry("g1").await, Some(Decision::Commit));
    tokio::time::timeout(Duration::from_secs(5), async {
        while !lab.trace.lines().contains(&"log end".to_string()) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("recovery finishes");
    for service in ["inventory", "payment", "order"] {
        lab.trace.at(&format!("commit {service}"));
    }
    // Finished: the log answers from now on.
    assert_eq!(lab.committer.inquiry("g1").await, Some(Decision::Commit));
}

#[tokio::test]
async fn an_inquiry_about_a_stranger_is_presumed_abort_unless_the_log_is_unreadable() {
    let lab = lab([Vote::Yes, Vote::Yes, Vote::Yes]);
    assert_eq!(
        lab.committer.inquiry("never-seen").await,
        Some(Decision::Abort)
    );
    *lab.log.unreadable.lock().unwrap() = true;
    assert_eq!(
        lab.committer.inquiry("never-seen").await,
        None,
        "no answer rather than a guess"
    );
}
