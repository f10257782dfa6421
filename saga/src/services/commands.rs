//! Orchestrated mode: a service executes the orchestrator's commands and replies. Each command is
//! one local transaction: dedupe record, business change, reply in the outbox.

use super::{inventory, order, payment, ServiceContext};
use crate::consumer::{first_delivery, MessageHandler};
use crate::error::SagaError;
use crate::message::{Body, Command, Envelope, Reply, StepResult};
use crate::outbox::Staged;
use crate::telemetry;
use common::domain::OrderStatus;
use futures::future::BoxFuture;
use std::time::Instant;

/// Executes commands addressed to one service.
pub struct CommandHandler {
    pub ctx: ServiceContext,
}

impl MessageHandler for CommandHandler {
    fn handle(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), SagaError>> {
        Box::pin(self.execute(envelope))
    }
}

impl CommandHandler {
    async fn execute(&self, envelope: Envelope) -> Result<(), SagaError> {
        let Body::Command(command) = &envelope.body else {
            tracing::warn!(message_id = %envelope.message_id, "not a command; ignored");
            return Ok(());
        };
        let ctx = &self.ctx;
        if command.step().service() != ctx.kind {
            return Err(SagaError::Config(format!(
                "{} service got a {} command: topics are miswired",
                ctx.kind.as_str(),
                command.step().as_str()
            )));
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
        let id = envelope.order_id;
        let result = match command {
            Command::CreateOrder { order } => {
                order::create(&mut tx, order).await?;
                StepResult::Done
            }
            Command::ConfirmOrder => {
                order::finish(&mut tx, id, OrderStatus::Confirmed, None).await?;
                StepResult::Done
            }
            Command::CancelOrder { reason } => {
                order::finish(&mut tx, id, OrderStatus::Cancelled, Some(reason)).await?;
                StepResult::Done
            }
            Command::ReserveStock { order } => match inventory::reserve(&mut tx, order).await? {
                Ok(()) => StepResult::Done,
                Err(reason) => StepResult::Rejected { reason },
            },
            Command::CommitStock => {
                inventory::commit(&mut tx, id).await?;
                StepResult::Done
            }
            Command::ReleaseStock => {
                inventory::release(&mut tx, id).await?;
                StepResult::Done
            }
            Command::ChargePayment { order } => match payment::charge(&mut tx, order).await? {
                Ok(()) => StepResult::Done,
                Err(reason) => StepResult::Rejected { reason },
            },
            Command::RefundPayment => {
                payment::refund(&mut tx, id).await?;
                StepResult::Done
            }
        };
        let reply = Envelope::new(
            id,
            Body::Reply(Reply {
                step: command.step(),
                result,
            }),
        );
        let mut staged = Staged::default();
        staged
            .enqueue(&mut tx, &ctx.kafka.topics.replies(), &reply)
            .await?;
        tx.commit()
            .await
            .map_err(SagaError::db("committing a command"))?;
        ctx.relay.committed(staged);
        ctx.metrics.record(telemetry::HANDLER_TX, started.elapsed());
        Ok(())
    }
}
