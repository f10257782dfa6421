//! One lane: a partition subset's deliveries handled in order, each offset stored only after its
//! handler's local transaction committed.

use super::{Delivery, MessageHandler};
use crate::error::SagaError;
use crate::message::{DecodeFailure, Envelope};
use common::metrics::MetricsRegistry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Handles one lane's deliveries in order; a retryable failure is retried (the offset does not
/// move), anything else is logged and skipped so one poison message cannot stop the service.
pub(super) async fn run<H: MessageHandler>(
    mut rx: mpsc::Receiver<Delivery>,
    handler: Arc<H>,
    consumer: Arc<StreamConsumer>,
    metrics: MetricsRegistry,
) {
    while let Some(delivery) = rx.recv().await {
        metrics.add("messages.consumed", 1);
        match Envelope::decode(&delivery.payload) {
            Ok(envelope) => {
                let mut backoff = Duration::from_millis(20);
                loop {
                    match handler.handle(envelope.clone()).await {
                        Ok(()) => break,
                        Err(err) if err.is_retryable() => {
                            tracing::warn!(cause = %err, order_id = %envelope.order_id, ?backoff, "handler failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                        Err(err) => {
                            metrics.add("messages.failed", 1);
                            tracing::error!(cause = %err, order_id = %envelope.order_id, "handler failed for good; moving past the message (counted in messages.failed)");
                            break;
                        }
                    }
                }
            }
            Err(failure) => {
                metrics.add("messages.undecodable", 1);
                let reason = match failure {
                    DecodeFailure::Malformed(why) => why,
                    DecodeFailure::Version(v) => format!("schema version {v}"),
                };
                let err = SagaError::Undecodable {
                    topic: delivery.topic.clone(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                    reason,
                };
                tracing::error!(cause = %err, "undecodable message; moving past it (counted in messages.undecodable)");
            }
        }
        // The local transaction committed (or the message is given up for good): only now may the
        // group move past it. A crash right here redelivers it, and the dedupe absorbs it.
        common::failpoint::pass("consumer-before-offset-store").await;
        if let Err(err) =
            consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
        {
            tracing::warn!(cause = %err, "storing an offset failed (partition revoked?)");
        }
    }
}
