//! The coordinator's gRPC face: the shared client API (`OrderApi.PlaceOrder`) and the
//! participants' `Coordinator.Decision` inquiry.

use super::committer::Committer;
use crate::protocol::Decision;
use common::api::pb::{Outcome, OutcomeKind as PbOutcome, PlaceOrderRequest};
use common::api::twopc_pb::{
    coordinator_server::Coordinator, DecisionKind, DecisionReply, GidRequest,
};
use common::api::{unix_micros_now, OrderApi};
use common::domain::{Order, OutcomeKind};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct CoordinatorService {
    pub committer: Committer,
    /// Used when a request names no deadline.
    pub default_deadline: Duration,
}

#[tonic::async_trait]
impl OrderApi for CoordinatorService {
    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<Outcome>, Status> {
        let received_unix_us = unix_micros_now();
        let received = Instant::now();
        let req = request.into_inner();
        let order = Order::try_from(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let deadline_ms = if req.deadline_ms == 0 {
            self.default_deadline
        } else {
            Duration::from_millis(req.deadline_ms.into())
        };
        // The protocol runs in its own task: a client that hangs up must not cancel a transaction
        // midway (that would strand prepared branches and an in-flight phase).
        let committer = self.committer.clone();
        let placing = order.clone();
        let placed =
            tokio::spawn(async move { committer.place(&placing, received + deadline_ms).await })
                .await
                .map_err(|e| Status::internal(format!("the transaction's task failed: {e}")))?;
        let decided = placed.decided_unix_us;
        Ok(Response::new(Outcome {
            order_id: req.order_id,
            kind: PbOutcome::from(placed.kind) as i32,
            reason: placed.reason,
            amount_cents: order.amount().0,
            received_unix_us,
            // Under 2PC the order is accepted only when it is decided: nothing is visible before.
            accepted_unix_us: if placed.kind == OutcomeKind::Committed {
                decided
            } else {
                0
            },
            decided_unix_us: decided,
        }))
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    #[tracing::instrument(skip_all, fields(gid = %request.get_ref().gid))]
    async fn decision(
        &self,
        request: Request<GidRequest>,
    ) -> Result<Response<DecisionReply>, Status> {
        let answer = match self.committer.inquiry(&request.into_inner().gid).await {
            Some(Decision::Commit) => DecisionKind::Commit,
            Some(Decision::Abort) => DecisionKind::Abort,
            None => DecisionKind::Unknown,
        };
        Ok(Response::new(DecisionReply {
            decision: answer as i32,
        }))
    }
}
