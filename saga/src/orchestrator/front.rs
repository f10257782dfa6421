//! The orchestrator's client API: record the saga (accepted), then wait for its final outcome or
//! the client's deadline, whichever comes first; the saga carries on either way.

use super::engine::Engine;
use crate::machine::Saga;
use crate::server::{admit, client_deadline, outcome_message, start_holding, uncancellable};
use crate::telemetry;
use crate::waiters::Decided;
use common::admission::Admission;
use common::api::{pb, unix_micros_now, OrderApi};
use common::domain::Order;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct OrchestratorFront {
    pub engine: Engine,
    pub admission: Admission,
}

#[tonic::async_trait]
impl OrderApi for OrchestratorFront {
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
        let engine = &self.engine;
        let outcome = engine.waiters.register(order.id);
        let (saga, first) = Saga::start(order.clone());
        let created = {
            let engine = engine.clone();
            uncancellable(async move {
                let waiters = engine.waiters.clone();
                let start = engine.start(&saga, first);
                start_holding(&waiters, saga.order.id, slot, start, |created| *created).await
            })
            .await?
            .map_err(|e| Status::unavailable(e.to_string()))?
        };
        let accepted_us = unix_micros_now();
        engine.metrics.record(telemetry::ACCEPT, started.elapsed());
        let mut decided = None;
        if !created {
            // A repeated request: answer from the log if the saga is already final.
            let (log, id) = (engine.log.clone(), order.id);
            let stored = uncancellable(async move { log.load(id).await })
                .await?
                .map_err(|e| Status::unavailable(e.to_string()))?;
            decided = stored.and_then(|s| {
                let reason = s.ending.as_ref().map(|e| e.to_text()).unwrap_or_default();
                s.outcome().map(|kind| Decided {
                    kind,
                    reason,
                    decided_unix_us: unix_micros_now(),
                })
            });
        }
        if decided.is_none() {
            decided = tokio::time::timeout(deadline.saturating_sub(started.elapsed()), outcome)
                .await
                .ok()
                .and_then(Result::ok);
        }
        if decided.is_some() {
            engine
                .metrics
                .record(telemetry::END_TO_END, started.elapsed());
        } else {
            engine.waiters.forget_abandoned(order.id);
            engine.metrics.add("saga.undecided", 1);
        }
        Ok(Response::new(outcome_message(
            &order,
            received_us,
            accepted_us,
            decided,
        )))
    }
}
