//! One lane: a partition subset's deliveries handled in order, each offset stored only after its
//! handler's local transaction committed. What has queued up while the lane was busy is handled
//! as one batch when the handler can ([`MessageHandler::handle_batch`]): under load, one commit
//! for several messages; at low load a batch is one message and nothing waits to fill it.

use super::{Delivery, MessageHandler};
use crate::error::SagaError;
use crate::message::{DecodeFailure, Envelope};
use common::metrics::MetricsRegistry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most deliveries one batch takes: bounds how long one transaction holds its locks.
const MAX_BATCH: usize = 32;

/// Handles one lane's deliveries in order; a retryable failure is retried (the offset does not
/// move), anything else is logged and skipped so one poison message cannot stop the service.
pub(super) async fn run<H: MessageHandler>(
    mut rx: mpsc::Receiver<Delivery>,
    handler: Arc<H>,
    consumer: Arc<StreamConsumer>,
    metrics: MetricsRegistry,
) {
    let mut deliveries = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut deliveries, MAX_BATCH).await > 0 {
        metrics.add("messages.consumed", deliveries.len() as u64);
        let envelopes: Vec<Envelope> = deliveries.iter().filter_map(decode(&metrics)).collect();
        let batch = (envelopes.len() > 1)
            .then(|| handler.handle_batch(&envelopes))
            .flatten();
        let batched = match batch {
            Some(batch) => match batch.await {
                Ok(()) => true,
                Err(err) => {
                    tracing::info!(cause = %err, messages = envelopes.len(), "a batch failed; handling its messages one by one");
                    false
                }
            },
            None => false,
        };
        if !batched {
            for envelope in &envelopes {
                handle_one(handler.as_ref(), envelope, &metrics).await;
            }
        }
        // The local transactions committed (or the messages are given up for good): only now
        // may the group move past them. A crash right here redelivers them; the dedupe absorbs it.
        for delivery in deliveries.drain(..) {
            common::failpoint::pass("consumer-before-offset-store").await;
            if let Err(err) =
                consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
            {
                tracing::warn!(cause = %err, "storing an offset failed (partition revoked?)");
            }
        }
    }
}

/// One message in its own transaction, retried while the failure is retryable.
async fn handle_one<H: MessageHandler>(
    handler: &H,
    envelope: &Envelope,
    metrics: &MetricsRegistry,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        match handler.handle(envelope.clone()).await {
            Ok(()) => return,
            Err(err) if err.is_retryable() => {
                tracing::warn!(cause = %err, order_id = %envelope.order_id, ?backoff, "handler failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                metrics.add("messages.failed", 1);
                tracing::error!(cause = %err, order_id = %envelope.order_id, "handler failed for good; moving past the message (counted in messages.failed)");
                return;
            }
        }
    }
}

/// The delivery's envelope; an undecodable one is logged, counted and skipped.
fn decode(metrics: &MetricsRegistry) -> impl Fn(&Delivery) -> Option<Envelope> + '_ {
    move |delivery| match Envelope::decode(&delivery.payload) {
        Ok(envelope) => Some(envelope),
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
            None
        }
    }
}
