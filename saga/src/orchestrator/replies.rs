//! The orchestrator's inbound side: each reply is one saga transition; a lane's backlog of
//! replies is applied in one transaction.

use super::engine::{Engine, Trigger};
use crate::consumer::MessageHandler;
use crate::error::SagaError;
use crate::message::{Body, Envelope};
use common::domain::OrderId;
use futures::future::BoxFuture;

pub struct ReplyHandler {
    pub engine: Engine,
}

impl MessageHandler for ReplyHandler {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), SagaError>> {
        Box::pin(async move {
            let Some(trigger) = reply_trigger(&envelope) else {
                return Ok(());
            };
            self.engine
                .apply(envelope.order_id, trigger, Some(&envelope))
                .await
        })
    }

    fn handle_batch<'a>(
        &'a self,
        envelopes: &'a [Envelope],
    ) -> Option<BoxFuture<'a, Result<(), SagaError>>> {
        Some(Box::pin(async move {
            let triggers: Vec<(OrderId, Trigger, Option<&Envelope>)> = envelopes
                .iter()
                .filter_map(|e| Some((e.order_id, reply_trigger(e)?, Some(e))))
                .collect();
            self.engine.apply_all(&triggers).await
        }))
    }
}

/// The transition a reply triggers; None (logged) for anything that is not a reply.
fn reply_trigger(envelope: &Envelope) -> Option<Trigger> {
    let Body::Reply(reply) = &envelope.body else {
        tracing::warn!(message_id = %envelope.message_id, "not a reply; ignored");
        return None;
    };
    Some(Trigger::Reply {
        step: reply.step,
        result: reply.result,
    })
}
