//! Drives sagas through the state machine: every transition — from a reply or a timeout — is one
//! transaction that dedupes the trigger, saves the new state and puts the next command in the
//! outbox. Whoever finishes a saga wakes the clients waiting for it.

use super::store;
use crate::config::{KafkaSettings, StepPolicy};
use crate::error::SagaError;
use crate::machine::{Saga, Transition};
use crate::message::{Body, Envelope, Step};
use crate::outbox::{enqueue, RelaySignal};
use crate::telemetry;
use crate::waiters::{Decided, OutcomeWaiters};
use common::api::unix_micros_now;
use common::domain::{OrderId, OutcomeKind};
use common::metrics::MetricsRegistry;
use sqlx::{PgPool, Postgres, Transaction};

use std::time::{Duration, Instant};

/// What the orchestrator's tasks share.
#[derive(Clone)]
pub struct Engine {
    pub pool: PgPool,
    pub kafka: KafkaSettings,
    pub policy: StepPolicy,
    pub relay: RelaySignal,
    pub metrics: MetricsRegistry,
    pub waiters: OutcomeWaiters,
}

/// What triggered a transition.
pub enum Trigger {
    Reply {
        step: Step,
        result: crate::message::StepResult,
    },
    Timeout,
}

impl Engine {
    pub fn new(
        pool: PgPool,
        kafka: KafkaSettings,
        policy: StepPolicy,
        metrics: MetricsRegistry,
    ) -> Engine {
        Engine {
            pool,
            kafka,
            policy,
            relay: RelaySignal::default(),
            metrics,
            waiters: OutcomeWaiters::default(),
        }
    }

    /// Starts a saga: its row and its first command, in one transaction. False if it existed.
    pub async fn start(
        &self,
        saga: &Saga,
        first: crate::message::Command,
    ) -> Result<bool, SagaError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SagaError::db("beginning a transaction"))?;
        if !store::insert(&mut tx, saga, self.policy.timeout_for(1)).await? {
            return Ok(false);
        }
        self.send(&mut tx, saga.order.id, first).await?;
        tx.commit()
            .await
            .map_err(SagaError::db("committing a new saga"))?;
        self.relay.committed();
        Ok(true)
    }

    /// Applies one trigger to one saga. `dedupe` is the reply's envelope (None for timeouts).
    pub async fn apply(
        &self,
        order: OrderId,
        trigger: Trigger,
        dedupe: Option<&Envelope>,
    ) -> Result<(), SagaError> {
        let started = Instant::now();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(SagaError::db("beginning a transaction"))?;
        if let Some(envelope) = dedupe {
            if !crate::consumer::first_delivery(&mut tx, envelope).await? {
                self.metrics.add("messages.duplicate", 1);
                return Ok(());
            }
        }
        let Some(store::Locked {
            saga,
            age_us,
            overdue,
        }) = store::lock(&mut tx, order).await?
        else {
            tracing::warn!(order_id = %order, "reply for an unknown saga; ignored");
            tx.commit()
                .await
                .map_err(SagaError::db("committing a dedupe record"))?;
            return Ok(());
        };
        let awaited = saga.state.awaited_step();
        let transition = match &trigger {
            Trigger::Reply { step, result } => saga.on_reply(*step, *result),
            // A reply may have moved the saga on since the scan: then this timeout is void.
            Trigger::Timeout if !overdue => Transition::Stale,
            Trigger::Timeout => {
                tracing::info!(order_id = %order, state = saga.state.as_str(), attempts = saga.attempts, "step timed out");
                self.metrics.add("saga.timeouts", 1);
                saga.on_timeout(self.policy.max_attempts)
            }
        };
        let Transition::Advance {
            saga: next,
            command,
        } = transition
        else {
            self.metrics.add("messages.stale", 1);
            tx.commit()
                .await
                .map_err(SagaError::db("committing a dedupe record"))?;
            return Ok(());
        };
        let timeout = (!next.state.is_terminal()).then(|| self.policy.timeout_for(next.attempts));
        store::save(&mut tx, &next, timeout).await?;
        if let Some(command) = command {
            self.send(&mut tx, order, command).await?;
        }
        tx.commit()
            .await
            .map_err(SagaError::db("committing a saga transition"))?;
        self.relay.committed();
        self.metrics
            .record(telemetry::HANDLER_TX, started.elapsed());
        common::failpoint::pass("orchestrator-after-transition").await;
        if let (Trigger::Reply { step, .. }, Some(awaited)) = (&trigger, awaited) {
            debug_assert_eq!(*step, awaited);
            self.metrics
                .record(step.metric(), telemetry::micros(age_us));
        }
        if next.attempts > 1 {
            self.metrics.add("saga.retries", 1);
        }
        if let Some(kind) = next.outcome() {
            self.finished(&next, kind);
        }
        Ok(())
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

    async fn send(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        order: OrderId,
        command: crate::message::Command,
    ) -> Result<(), SagaError> {
        let topic = self.kafka.topics.commands(command.step().service());
        enqueue(tx, &topic, &Envelope::new(order, Body::Command(command))).await
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
            let due = match store::due(&self.pool, 256).await {
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
