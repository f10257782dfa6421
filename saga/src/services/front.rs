//! Choreography's client API, served by the order service: write the order PENDING and its
//! `OrderCreated` event in one transaction, then wait for the outcome the order service records
//! when the last event arrives, or for the client's deadline.

use super::{order, ServiceContext};
use crate::error::SagaError;
use crate::machine::Ending;
use crate::message::{Body, Envelope, Event};
use crate::outbox::Staged;
use crate::server::{admit, client_deadline, outcome_message, start_holding, uncancellable};
use crate::telemetry;
use crate::waiters::{Decided, OutcomeWaiters};
use common::admission::Admission;
use common::api::{pb, unix_micros_now, OrderApi};
use common::domain::{Order, OrderStatus, OutcomeKind};
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct ChoreographyFront {
    pub ctx: ServiceContext,
    pub waiters: OutcomeWaiters,
    pub admission: Admission,
}

#[tonic::async_trait]
impl OrderApi for ChoreographyFront {
    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::Outcome>, Status> {
        let received_us = unix_micros_now();
        let started = Instant::now();
        let req = request.into_inner();
        let order = Order::try_from(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let deadline = client_deadline(req.deadline_ms);
        let slot = match admit(&self.admission, &order, received_us, started + deadline).await {
            Ok(slot) => slot,
            Err(shed) => return Ok(Response::new(shed)),
        };
        let outcome = self.waiters.register(order.id);
        let existing = {
            let (ctx, waiters, order) = (self.ctx.clone(), self.waiters.clone(), order.clone());
            uncancellable(async move {
                let accepted = accept(&ctx, &order);
                // `None`: the order was created here, not found already final.
                start_holding(&waiters, order.id, slot, accepted, Option::is_none).await
            })
            .await?
            .map_err(|e| Status::unavailable(e.to_string()))?
        };
        let accepted_us = unix_micros_now();
        self.ctx
            .metrics
            .record(telemetry::ACCEPT, started.elapsed());
        let decided = match existing {
            Some(decided) => Some(decided),
            None => tokio::time::timeout(deadline.saturating_sub(started.elapsed()), outcome)
                .await
                .ok()
                .and_then(Result::ok),
        };
        if decided.is_some() {
            self.ctx
                .metrics
                .record(telemetry::END_TO_END, started.elapsed());
        } else {
            self.waiters.forget_abandoned(order.id);
            self.ctx.metrics.add("saga.undecided", 1);
        }
        Ok(Response::new(outcome_message(
            &order,
            received_us,
            accepted_us,
            decided,
        )))
    }
}

/// Creates the order with its first event; for a repeated request, returns the outcome if the
/// order is already final.
async fn accept(ctx: &ServiceContext, order: &Order) -> Result<Option<Decided>, SagaError> {
    // Until its rows are handed over (`RelayHandle::turn`).
    let _turn = ctx.relay.turn(order.id).await;
    let mut tx = ctx
        .pool
        .begin()
        .await
        .map_err(SagaError::db("beginning a transaction"))?;
    if order::create(&mut tx, order).await? {
        let event = Envelope::new(
            order.id,
            Body::Event(Event::OrderCreated {
                order: order.clone(),
            }),
        );
        let mut staged = Staged::default();
        staged
            .enqueue(&mut tx, &ctx.kafka.topics.events(), &event)
            .await?;
        tx.commit()
            .await
            .map_err(SagaError::db("committing a new order"))?;
        ctx.relay.committed(staged);
        return Ok(None);
    }
    tx.rollback().await.map_err(SagaError::db("rolling back"))?;
    let decided = match order::status(&ctx.pool, order.id).await? {
        Some((OrderStatus::Confirmed, _)) => Some(Decided {
            kind: OutcomeKind::Committed,
            reason: String::new(),
            decided_unix_us: unix_micros_now(),
        }),
        Some((OrderStatus::Cancelled, reason)) => Some(Decided {
            kind: Ending::outcome_of(reason.as_deref()),
            reason: reason.unwrap_or_default(),
            decided_unix_us: unix_micros_now(),
        }),
        _ => None,
    };
    Ok(decided)
}
