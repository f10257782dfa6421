//! Drives sagas through the state machine: every transition — from a reply or a timeout — is one
//! transaction that dedupes the trigger, saves the new state and puts the next command in the
//! outbox. Whoever finishes a saga wakes the clients waiting for it.

use super::saga_log::{self, Applied, Outgoing, SagaLog, Verdict};
use super::store::Locked;
use crate::config::{KafkaSettings, StepPolicy};
use crate::error::SagaError;
use crate::machine::{Saga, Transition};
use crate::message::{Body, Command, Envelope, Step, StepResult};
use crate::telemetry;
use crate::waiters::{Decided, OutcomeWaiters};
use common::api::unix_micros_now;
use common::domain::{OrderId, OutcomeKind};
use common::metrics::MetricsRegistry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the orchestrator's tasks share.
#[derive(Clone)]
pub struct Engine {
    pub log: Arc<dyn SagaLog>,
    pub kafka: KafkaSettings,
    pub policy: StepPolicy,
    pub metrics: MetricsRegistry,
    pub waiters: OutcomeWaiters,
}

/// What triggered a transition.
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    Reply { step: Step, result: StepResult },
    Timeout,
}

/// The engine's protocol logic for one trigger on one locked saga, free of storage: a reply
/// moves the saga by its state machine; a timeout counts only if the deadline passed under the
/// lock (a reply may have moved the saga on since the timer's scan); the next command goes to
/// its service's command topic and the next deadline grows with the attempts.
pub fn decide(
    locked: &Locked,
    trigger: Trigger,
    policy: &StepPolicy,
    kafka: &KafkaSettings,
) -> Verdict {
    let saga = &locked.saga;
    let transition = match trigger {
        Trigger::Reply { step, result } => saga.on_reply(step, result),
        Trigger::Timeout if !locked.overdue => Transition::Stale,
        Trigger::Timeout => saga.on_timeout(policy.max_attempts),
    };
    match transition {
        Transition::Stale => Verdict::Stale,
        Transition::Advance {
            saga: next,
            command,
        } => Verdict::Advance {
            timeout: (!next.state.is_terminal()).then(|| policy.timeout_for(next.attempts)),
            send: command.map(|c| outgoing(kafka, saga.order.id, c)),
            next,
        },
    }
}

fn outgoing(kafka: &KafkaSettings, order: OrderId, command: Command) -> Outgoing {
    Outgoing {
        topic: kafka.topics.commands(command.step().service()),
        envelope: Envelope::new(order, Body::Command(command)),
    }
}

impl Engine {
    pub fn new(
        log: Arc<dyn SagaLog>,
        kafka: KafkaSettings,
        policy: StepPolicy,
        metrics: MetricsRegistry,
    ) -> Engine {
        Engine {
            log,
            kafka,
            policy,
            metrics,
            waiters: OutcomeWaiters::default(),
        }
    }

    /// Starts a saga: its row and its first command, in one transaction. False if it existed.
    pub async fn start(&self, saga: &Saga, first: Command) -> Result<bool, SagaError> {
        let first = outgoing(&self.kafka, saga.order.id, first);
        self.log
            .start(saga, first, self.policy.timeout_for(1))
            .await
    }

    /// Applies one trigger to one saga. `dedupe` is the reply's envelope (None for timeouts).
    pub async fn apply(
        &self,
        order: OrderId,
        trigger: Trigger,
        dedupe: Option<&Envelope>,
    ) -> Result<(), SagaError> {
        self.apply_all(&[(order, trigger, dedupe)]).await
    }

    /// Applies several triggers (a lane's backlog of replies) in one transaction of the log:
    /// one commit for all of them, each deduped and decided on its own. All or nothing.
    pub async fn apply_all(
        &self,
        triggers: &[(OrderId, Trigger, Option<&Envelope>)],
    ) -> Result<(), SagaError> {
        if triggers.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let decides: Vec<_> = triggers
            .iter()
            .map(|&(_, trigger, _)| {
                move |locked: &Locked| decide(locked, trigger, &self.policy, &self.kafka)
            })
            .collect();
        let transitions: Vec<saga_log::Transition> = triggers
            .iter()
            .zip(&decides)
            .map(|(&(order, _, dedupe), decide)| saga_log::Transition {
                order,
                dedupe,
                decide,
            })
            .collect();
        let applied = self.log.transitions(&transitions).await?;
        self.metrics.add(telemetry::TRANSITION_TRANSACTIONS, 1);
        self.metrics
            .add(telemetry::TRANSITIONS, transitions.len() as u64);
        for (&(order, trigger, _), applied) in triggers.iter().zip(applied) {
            self.settle(order, trigger, applied, started).await;
        }
        Ok(())
    }

    /// What follows a committed transition: its metrics, and the client woken if it ended.
    async fn settle(&self, order: OrderId, trigger: Trigger, applied: Applied, started: Instant) {
        let (locked, verdict) = match applied {
            Applied::Duplicate => {
                self.metrics.add("messages.duplicate", 1);
                return;
            }
            Applied::UnknownSaga => {
                tracing::warn!(order_id = %order, "reply for an unknown saga; ignored");
                return;
            }
            Applied::Decided { locked, verdict } => (locked, verdict),
        };
        if matches!(trigger, Trigger::Timeout) && locked.overdue {
            let saga = &locked.saga;
            tracing::info!(order_id = %order, state = saga.state.as_str(), attempts = saga.attempts, "step timed out");
            self.metrics.add("saga.timeouts", 1);
        }
        let Verdict::Advance { next, .. } = verdict else {
            self.metrics.add("messages.stale", 1);
            return;
        };
        self.metrics
            .record(telemetry::HANDLER_TX, started.elapsed());
        common::failpoint::pass("orchestrator-after-transition").await;
        if let (Trigger::Reply { step, .. }, Some(awaited)) =
            (trigger, locked.saga.state.awaited_step())
        {
            debug_assert_eq!(step, awaited);
            self.metrics
                .record(step.metric(), telemetry::micros(locked.age_us));
        }
        if next.attempts > 1 {
            self.metrics.add("saga.retries", 1);
        }
        if let Some(kind) = next.outcome() {
            self.finished(&next, kind);
        }
    }

    fn finished(&self, saga: &Saga, kind: OutcomeKind) {
        let id = saga.order.id;
        self.metrics.add(
            match kind {
                OutcomeKind::Committed => "saga.committed",
                OutcomeKind::Rejected => "saga.rejected",
                _ => "saga.aborted",
            },
            1,
        );
        let reason = saga
            .ending
            .as_ref()
            .map(|e| e.to_text())
            .unwrap_or_default();
        self.waiters.decide(
            id,
            Decided {
                kind,
                reason,
                decided_unix_us: unix_micros_now(),
            },
        );
    }

    /// Re-drives every saga whose step deadline passed, until shutdown.
    pub async fn run_timer(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let tick = (self.policy.step_timeout / 10)
            .clamp(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => return,
            }
            let due = match self.log.due(256).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(cause = %err, "scanning for overdue sagas failed");
                    continue;
                }
            };
            for order in due {
                if let Err(err) = self.apply(order, Trigger::Timeout, None).await {
                    tracing::warn!(cause = %err, order_id = %order, "re-driving a saga failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
