//! Choreographed mode: each service reacts to the events of the step before it and emits its own.
//! inventory: OrderCreated → reserve; PaymentCaptured → commit; PaymentRejected or PaymentVoided
//! → release. payment: StockReserved → charge (refused once voided); CancelRequested → void, or
//! re-announce a charge that came first. order: StockCommitted → confirm; StockRejected or
//! StockReleased → cancel. Every reaction is one local transaction with its dedupe record and its
//! outgoing event in the outbox. The order service's deadline watch (`deadlines`) asks for the
//! cancel of a saga that outlives its deadline.

use super::{inventory, order, payment, ServiceContext};
use crate::consumer::{first_delivery, MessageHandler};
use crate::error::SagaError;
use crate::machine::Ending;
use crate::message::{Body, Envelope, Event};
use crate::outbox::Staged;
use crate::telemetry;
use crate::waiters::{Decided, OutcomeWaiters};
use crate::ServiceKind;
use common::api::unix_micros_now;
use common::domain::{OrderId, OrderStatus, OutcomeKind};
use futures::future::BoxFuture;
use sqlx::{Postgres, Transaction};
use std::time::Instant;

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
        // Until its rows are handed over (`RelayHandle::turn`).
        let _turn = ctx.relay.turn(envelope.order_id).await;
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
                inventory::commit(&mut tx, id).await?;
                effect.emit = Some(Event::StockCommitted);
            }
            (ServiceKind::Inventory, Event::PaymentRejected { reason }) => {
                let reason = Ending::Rejected(*reason).to_text();
                effect = release(&mut tx, id, reason).await?;
            }
            (ServiceKind::Inventory, Event::PaymentVoided { reason }) => {
                effect = release(&mut tx, id, reason.clone()).await?;
            }
            (ServiceKind::Payment, Event::StockReserved { order }) => {
                if payment::is_voided(&mut tx, id).await? {
                    // The saga was cancelled before this charge arrived; inventory releases on
                    // the void, so nothing is said here.
                    ctx.metrics.add("payment.refused_after_void", 1);
                } else {
                    effect.emit = Some(match payment::charge(&mut tx, order).await? {
                        Ok(()) => Event::PaymentCaptured,
                        Err(reason) => Event::PaymentRejected { reason },
                    });
                }
            }
            (ServiceKind::Payment, Event::CancelRequested { reason }) => {
                effect.emit = Some(match payment::void(&mut tx, id).await? {
                    payment::Pivot::Voided => Event::PaymentVoided {
                        reason: reason.clone(),
                    },
                    // Past the pivot the saga can only go forward: announcing the charge again
                    // re-drives a forward step that was lost or skipped (each is idempotent).
                    payment::Pivot::Charged => Event::PaymentCaptured,
                });
            }
            (ServiceKind::Order, Event::StockCommitted) => {
                if order::finish(&mut tx, id, OrderStatus::Confirmed, None).await? {
                    effect.emit = Some(Event::OrderConfirmed);
                    effect.decided = Some(decided(OutcomeKind::Committed, String::new()));
                }
            }
            (ServiceKind::Order, Event::StockRejected { reason }) => {
                effect = cancel(&mut tx, id, Ending::Rejected(*reason).to_text()).await?;
            }
            (ServiceKind::Order, Event::StockReleased { reason }) => {
                effect = cancel(&mut tx, id, reason.clone()).await?;
            }
            _ => unreachable!("cares_about filters the rest"),
        }
        let mut staged = Staged::default();
        if let Some(event) = &effect.emit {
            staged
                .enqueue(
                    &mut tx,
                    &ctx.kafka.topics.events(),
                    &Envelope::new(id, Body::Event(event.clone())),
                )
                .await?;
        }
        tx.commit()
            .await
            .map_err(SagaError::db("committing a reaction"))?;
        ctx.relay.committed(staged);
        ctx.metrics.record(telemetry::HANDLER_TX, started.elapsed());
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
                        | Event::PaymentVoided { .. }
                )
            }
            ServiceKind::Payment => {
                matches!(
                    event,
                    Event::StockReserved { .. } | Event::CancelRequested { .. }
                )
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

/// Inventory's compensation: the reservation released (a no-op if none), then `StockReleased`.
async fn release(
    tx: &mut Transaction<'_, Postgres>,
    id: OrderId,
    reason: String,
) -> Result<Effect, SagaError> {
    inventory::release(tx, id).await?;
    Ok(Effect {
        emit: Some(Event::StockReleased { reason }),
        decided: None,
    })
}

/// The order service's last step of a failed saga; `reason` says rejected or aborted, and why.
async fn cancel(
    tx: &mut Transaction<'_, Postgres>,
    id: OrderId,
    reason: String,
) -> Result<Effect, SagaError> {
    let mut effect = Effect::default();
    if order::finish(tx, id, OrderStatus::Cancelled, Some(&reason)).await? {
        effect.emit = Some(Event::OrderCancelled {
            reason: reason.clone(),
        });
        effect.decided = Some(decided(Ending::outcome_of(Some(&reason)), reason));
    }
    Ok(effect)
}

fn decided(kind: OutcomeKind, reason: String) -> Decided {
    Decided {
        kind,
        reason,
        decided_unix_us: unix_micros_now(),
    }
}
