//! The orchestrator's inbound side: each reply is one saga transition.

use super::engine::{Engine, Trigger};
use crate::consumer::MessageHandler;
use crate::error::SagaError;
use crate::message::{Body, Envelope};
use futures::future::BoxFuture;

pub struct ReplyHandler {
    pub engine: Engine,
}

impl MessageHandler for ReplyHandler {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), SagaError>> {
        Box::pin(async move {
            let Body::Reply(reply) = &envelope.body else {
                tracing::warn!(message_id = %envelope.message_id, "not a reply; ignored");
                return Ok(());
            };
            let trigger = Trigger::Reply {
                step: reply.step,
                result: reply.result,
            };
            self.engine
                .apply(envelope.order_id, trigger, Some(&envelope))
                .await
        })
    }
}
