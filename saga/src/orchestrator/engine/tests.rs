//! Protocol traces of the orchestrator's engine, without Kafka or PostgreSQL: an in-memory saga
//! log records each committed transition and the commands it put in the outbox, and each test
//! reads that as the saga's story — replies, duplicates, stale replies, timeouts, compensation,
//! and the client woken at the end.

use super::*;
use crate::config::Topics;
use crate::orchestrator::saga_log::Transition;
use common::domain::{Cents, CustomerId, Order, OrderLine, RejectReason, Sku};
use common::kafka_clients::ClientTuning;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Sagas, processed reply ids and the outbox, in memory; one lock per transition plays the
/// database transaction.
#[derive(Default)]
struct MemoryLog {
    sagas: Mutex<HashMap<OrderId, (Saga, bool)>>,
    processed: Mutex<HashSet<uuid::Uuid>>,
    outbox: Mutex<Vec<Outgoing>>,
    /// How many transitions each transaction carried.
    batches: Mutex<Vec<usize>>,
}

impl MemoryLog {
    /// The steps sent so far, as `step → service topic suffix`.
    fn sent(&self) -> Vec<String> {
        self.outbox
            .lock()
            .unwrap()
            .iter()
            .map(|o| match &o.envelope.body {
                Body::Command(c) => format!(
                    "{} → {}",
                    c.step().as_str(),
                    o.topic.rsplit('.').next().unwrap_or_default()
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn saga(&self, order: OrderId) -> Saga {
        self.sagas.lock().unwrap()[&order].0.clone()
    }

    /// The step deadline of `order` passes.
    fn overdue(&self, order: OrderId) {
        self.sagas.lock().unwrap().get_mut(&order).unwrap().1 = true;
    }
}

impl SagaLog for MemoryLog {
    fn start<'a>(
        &'a self,
        saga: &'a Saga,
        first: Outgoing,
        _: Duration,
    ) -> BoxFuture<'a, Result<bool, SagaError>> {
        Box::pin(async move {
            let mut sagas = self.sagas.lock().unwrap();
            if sagas.contains_key(&saga.order.id) {
                return Ok(false);
            }
            sagas.insert(saga.order.id, (saga.clone(), false));
            self.outbox.lock().unwrap().push(first);
            Ok(true)
        })
    }

    fn transitions<'a>(
        &'a self,
        transitions: &'a [Transition<'a>],
    ) -> BoxFuture<'a, Result<Vec<Applied>, SagaError>> {
        Box::pin(async move {
            self.batches.lock().unwrap().push(transitions.len());
            let mut sagas = self.sagas.lock().unwrap();
            let mut applied = Vec::new();
            for transition in transitions {
                let order = transition.order;
                if let Some(envelope) = transition.dedupe {
                    if !self.processed.lock().unwrap().insert(envelope.message_id) {
                        applied.push(Applied::Duplicate);
                        continue;
                    }
                }
                let Some((saga, overdue)) = sagas.get(&order).cloned() else {
                    applied.push(Applied::UnknownSaga);
                    continue;
                };
                let locked = Locked {
                    saga,
                    age_us: 1_000,
                    overdue,
                };
                let verdict = (transition.decide)(&locked);
                if let Verdict::Advance { next, send, .. } = &verdict {
                    sagas.insert(order, (next.clone(), false));
                    self.outbox.lock().unwrap().extend(send.clone());
                }
                applied.push(Applied::Decided { locked, verdict });
            }
            Ok(applied)
        })
    }

    fn load(&self, order: OrderId) -> BoxFuture<'_, Result<Option<Saga>, SagaError>> {
        let saga = self.sagas.lock().unwrap().get(&order).map(|s| s.0.clone());
        Box::pin(async move { Ok(saga) })
    }

    fn due(&self, _: i64) -> BoxFuture<'_, Result<Vec<OrderId>, SagaError>> {
        let due = self
            .sagas
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (saga, overdue))| *overdue && !saga.state.is_terminal())
            .map(|(id, _)| *id)
            .collect();
        Box::pin(async move { Ok(due) })
    }
}

struct Lab {
    engine: Engine,
    log: Arc<MemoryLog>,
    order: Order,
}

impl Lab {
    /// A started saga, its client waiting for the outcome.
    async fn started() -> (Lab, tokio::sync::oneshot::Receiver<Decided>) {
        let log = Arc::new(MemoryLog::default());
        let kafka = KafkaSettings {
            bootstrap: "unused:9092".into(),
            topics: Topics::new("t"),
            partitions: 1,
            tuning: ClientTuning::default(),
            group_suffix: String::new(),
            publish_twice: false,
        };
        let engine = Engine::new(
            log.clone(),
            kafka,
            StepPolicy::default(),
            MetricsRegistry::new("test"),
        );
        let line = OrderLine {
            sku: Sku(1),
            qty: 2,
            unit_price: Cents(250),
        };
        let order = Order::new(OrderId::new_random(), CustomerId(3), vec![line]).unwrap();
        let outcome = engine.waiters.register(order.id);
        let (saga, first) = Saga::start(order.clone());
        assert!(engine.start(&saga, first.clone()).await.unwrap());
        assert!(
            !engine.start(&saga, first).await.unwrap(),
            "a repeat starts nothing"
        );
        (Lab { engine, log, order }, outcome)
    }

    /// The reply a service sends for the awaited step.
    async fn reply(&self, result: StepResult) -> Envelope {
        let step = self.saga().state.awaited_step().expect("a step is awaited");
        let envelope = Envelope::new(
            self.order.id,
            Body::Reply(crate::message::Reply { step, result }),
        );
        self.deliver(&envelope).await;
        envelope
    }

    async fn deliver(&self, envelope: &Envelope) {
        let Body::Reply(reply) = &envelope.body else {
            unreachable!()
        };
        let trigger = Trigger::Reply {
            step: reply.step,
            result: reply.result,
        };
        self.engine
            .apply(envelope.order_id, trigger, Some(envelope))
            .await
            .unwrap();
    }

    async fn timeout(&self) {
        self.engine
            .apply(self.order.id, Trigger::Timeout, None)
            .await
            .unwrap();
    }

    fn saga(&self) -> Saga {
        self.log.saga(self.order.id)
    }

    fn counter(&self, name: &str) -> u64 {
        let snapshot = self.engine.metrics.snapshot(false);
        snapshot.counters.get(name).copied().unwrap_or(0)
    }
}

#[tokio::test]
async fn every_step_in_order_then_the_client_hears_committed() {
    let (lab, outcome) = Lab::started().await;
    while !lab.saga().state.is_terminal() {
        lab.reply(StepResult::Done).await;
    }
    assert_eq!(
        lab.log.sent(),
        [
            "create_order → order",
            "reserve_stock → inventory",
            "charge_payment → payment",
            "commit_stock → inventory",
            "confirm_order → order",
        ]
    );
    assert_eq!(outcome.await.unwrap().kind, OutcomeKind::Committed);
    assert_eq!(lab.counter("saga.committed"), 1);
}

#[tokio::test]
async fn a_redelivered_reply_changes_nothing() {
    let (lab, _outcome) = Lab::started().await;
    let created = lab.reply(StepResult::Done).await;
    let before = (lab.saga(), lab.log.sent());
    lab.deliver(&created).await;
    assert_eq!((lab.saga(), lab.log.sent()), before);
    assert_eq!(lab.counter("messages.duplicate"), 1);
}

#[tokio::test]
async fn a_reply_for_a_step_no_longer_awaited_is_stale() {
    let (lab, _outcome) = Lab::started().await;
    lab.reply(StepResult::Done).await; // order created; stock awaited
    let late = Envelope::new(
        lab.order.id,
        Body::Reply(crate::message::Reply {
            step: Step::CreateOrder,
            result: StepResult::Done,
        }),
    );
    let before = lab.saga();
    lab.deliver(&late).await;
    assert_eq!(lab.saga(), before);
    assert_eq!(lab.counter("messages.stale"), 1);
}

#[tokio::test]
async fn timeouts_resend_the_step_then_give_up_and_compensate_it_first() {
    let (lab, outcome) = Lab::started().await;
    lab.reply(StepResult::Done).await; // now reserving stock
                                       // The timer's scan saw the saga overdue, but a reply beat the timeout to the lock.
    lab.timeout().await;
    assert_eq!(lab.saga().attempts, 1, "not overdue under the lock: stale");
    for attempt in 2..=3 {
        lab.log.overdue(lab.order.id);
        lab.timeout().await;
        assert_eq!(lab.saga().attempts, attempt, "the step is sent again");
    }
    lab.log.overdue(lab.order.id);
    lab.timeout().await;
    // Out of attempts: the unanswered reservation may have applied, so it is released first.
    assert_eq!(lab.saga().state.as_str(), "RELEASING_STOCK");
    while !lab.saga().state.is_terminal() {
        lab.reply(StepResult::Done).await;
    }
    assert_eq!(
        lab.log.sent()[1..],
        [
            "reserve_stock → inventory",
            "reserve_stock → inventory",
            "reserve_stock → inventory",
            "release_stock → inventory",
            "cancel_order → order",
        ]
    );
    let decided = outcome.await.unwrap();
    assert_eq!(decided.kind, OutcomeKind::Aborted);
    assert_eq!(decided.reason, "aborted:timeout:reserve_stock");
    assert_eq!(lab.counter("saga.timeouts"), 3);
}

#[tokio::test]
async fn a_refused_charge_releases_the_stock_and_cancels_as_rejected() {
    let (lab, outcome) = Lab::started().await;
    lab.reply(StepResult::Done).await; // created
    lab.reply(StepResult::Done).await; // reserved
    lab.reply(StepResult::Rejected {
        reason: RejectReason::InsufficientFunds,
    })
    .await;
    while !lab.saga().state.is_terminal() {
        lab.reply(StepResult::Done).await;
    }
    assert_eq!(
        lab.log.sent()[3..],
        ["release_stock → inventory", "cancel_order → order"]
    );
    let decided = outcome.await.unwrap();
    assert_eq!(decided.kind, OutcomeKind::Rejected);
    assert_eq!(decided.reason, "rejected:insufficient_funds");
}

#[tokio::test]
async fn a_reply_for_an_unknown_saga_is_ignored() {
    let (lab, _outcome) = Lab::started().await;
    let stranger = Envelope::new(
        OrderId::new_random(),
        Body::Reply(crate::message::Reply {
            step: Step::CreateOrder,
            result: StepResult::Done,
        }),
    );
    lab.deliver(&stranger).await;
    assert_eq!(lab.log.sent().len(), 1, "only the first command");
}

#[tokio::test]
async fn a_lanes_backlog_of_replies_is_one_transaction_deduped_per_reply() {
    use crate::consumer::MessageHandler;
    let (lab, _outcome) = Lab::started().await;
    let reply = |step| {
        Envelope::new(
            lab.order.id,
            Body::Reply(crate::message::Reply {
                step,
                result: StepResult::Done,
            }),
        )
    };
    let created = reply(Step::CreateOrder);
    // The second reply depends on the first's transition, saved earlier in the same batch.
    let backlog = [created.clone(), created, reply(Step::ReserveStock)];
    let handler = crate::orchestrator::replies::ReplyHandler {
        engine: lab.engine.clone(),
    };
    handler
        .handle_batch(&backlog)
        .expect("the orchestrator batches")
        .await
        .unwrap();
    assert_eq!(lab.log.batches.lock().unwrap().last(), Some(&3));
    assert_eq!(
        lab.log.sent(),
        [
            "create_order → order",
            "reserve_stock → inventory",
            "charge_payment → payment",
        ]
    );
    assert_eq!(lab.counter("messages.duplicate"), 1);
    assert_eq!(lab.counter(telemetry::TRANSITIONS), 3);
    assert_eq!(lab.counter(telemetry::TRANSITION_TRANSACTIONS), 1);
}
