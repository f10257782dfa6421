//! Choreographed mode: each service reacts to the events of the step before it and emits its own.
//! inventory: OrderCreated → reserve; PaymentCaptured → commit; PaymentRejected → release.
//! payment: StockReserved → charge. order: StockCommitted → confirm; StockRejected or
//! StockReleased → cancel. Every reaction is one local transaction with its dedupe record and
//! its outgoing event in the outbox.

use super::{inventory, order, payment, ServiceContext};
use crate::consumer::{first_delivery, MessageHandler};
use crate::error::SagaError;
use crate::machine::Ending;
use crate::message::{Body, Envelope, Event};
use crate::outbox::enqueue;
use crate::telemetry;
use crate::waiters::{Decided, OutcomeWaiters};
use crate::ServiceKind;
use common::api::unix_micros_now;
use common::domain::{OrderStatus, OutcomeKind};
use futures::future::BoxFuture;
use std::time::{Duration, Instant};

/// Reacts to the events one service cares about; all others pass by without a transaction.
pub struct EventHandler {
    pub ctx: ServiceContext,
    /// The order service wakes its `PlaceOrder` callers when it records an outcome.
    pub waiters: OutcomeWaiters,
}

impl MessageHandler for EventHandler {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), SagaError>> {
        Box::pin(self.react(envelope))
    }
}

/// What one reaction did, for the work after commit.
#[derive(Default)]
struct Effect {
    emit: Option<Event>,
    lock: Option<(&'static str, Duration)>,
    decided: Option<Decided>,
}

impl EventHandler {
    async fn react(&self, envelope: Envelope) -> Result<(), SagaError> {
        let Body::Event(event) = &envelope.body else {
            return Ok(());
        };
        let ctx = &self.ctx;
        let id = envelope.order_id;
        if !self.cares_about(event) {
            return Ok(());
        }
        if let (ServiceKind::Payment, Event::OrderConfirmed) = (ctx.kind, event) {
            // Observation only: the charge's semantic lock ends when the order is final.
            if let Some(held) = payment::captured_age(&ctx.pool, id).await? {
                ctx.metrics.record(telemetry::LOCK_CHARGE, held);
            }
            return Ok(());
        }
        let started = Instant::now();
        let mut tx = ctx
            .pool
            .begin()
            .await
            .map_err(SagaError::db("beginning a transaction"))?;
        if !first_delivery(&mut tx, &envelope).await? {
            ctx.metrics.add("messages.duplicate", 1);
            return Ok(());
        }
        let mut effect = Effect::default();
        match (ctx.kind, event) {
            (ServiceKind::Inventory, Event::OrderCreated { order }) => {
                effect.emit = Some(match inventory::reserve(&mut tx, order).await? {
                    Ok(()) => Event::StockReserved {
                        order: order.clone(),
                    },
                    Err(reason) => Event::StockRejected { reason },
                });
            }
            (ServiceKind::Inventory, Event::PaymentCaptured) => {
                effect.lock = inventory::commit(&mut tx, id)
                    .await?
                    .map(|d| (telemetry::LOCK_RESERVATION, d));
                effect.emit = Some(Event::StockCommitted);
            }
            (ServiceKind::Inventory, Event::PaymentRejected { reason }) => {
                effect.lock = inventory::release(&mut tx, id)
                    .await?
                    .map(|d| (telemetry::LOCK_RESERVATION, d));
                effect.emit = Some(Event::StockReleased { reason: *reason });
            }
            (ServiceKind::Payment, Event::StockReserved { order }) => {
                effect.emit = Some(match payment::charge(&mut tx, order).await? {
                    Ok(()) => Event::PaymentCaptured,
                    Err(reason) => Event::PaymentRejected { reason },
                });
            }
            (ServiceKind::Order, Event::StockCommitted) => {
                if order::finish(&mut tx, id, OrderStatus::Confirmed, None).await? {
                    effect.emit = Some(Event::OrderConfirmed);
                    effect.decided = Some(decided(OutcomeKind::Committed, String::new()));
                }
            }
            (
                ServiceKind::Order,
                Event::StockRejected { reason } | Event::StockReleased { reason },
            ) => {
                let text = Ending::Rejected(*reason).to_text();
                if order::finish(&mut tx, id, OrderStatus::Cancelled, Some(&text)).await? {
                    effect.emit = Some(Event::OrderCancelled {
                        reason: text.clone(),
                    });
                    effect.decided = Some(decided(OutcomeKind::Rejected, text));
                }
            }
            _ => unreachable!("cares_about filters the rest"),
        }
        if let Some(event) = &effect.emit {
            enqueue(
                &mut tx,
                &ctx.kafka.topics.events(),
                &Envelope::new(id, Body::Event(event.clone())),
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(SagaError::db("committing a reaction"))?;
        ctx.relay.committed();
        ctx.metrics.record(telemetry::HANDLER_TX, started.elapsed());
        if let Some((name, held)) = effect.lock {
            ctx.metrics.record(name, held);
        }
        if let Some(decided) = effect.decided {
            self.waiters.decide(id, decided);
        }
        Ok(())
    }

    fn cares_about(&self, event: &Event) -> bool {
        match self.ctx.kind {
            ServiceKind::Inventory => {
                matches!(
                    event,
                    Event::OrderCreated { .. }
                        | Event::PaymentCaptured
                        | Event::PaymentRejected { .. }
                )
            }
            ServiceKind::Payment => {
                matches!(event, Event::StockReserved { .. } | Event::OrderConfirmed)
            }
            ServiceKind::Order => {
                matches!(
                    event,
                    Event::StockCommitted
                        | Event::StockRejected { .. }
                        | Event::StockReleased { .. }
                )
            }
        }
    }
}

fn decided(kind: OutcomeKind, reason: String) -> Decided {
    Decided {
        kind,
        reason,
        decided_unix_us: unix_micros_now(),
    }
}
