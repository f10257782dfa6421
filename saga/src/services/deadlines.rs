//! Choreography's step timeouts, kept by the order service because every saga starts and ends
//! there. An order still PENDING after the saga deadline ([`StepPolicy::saga_deadline`]: what
//! the orchestrator waits on one unanswered step before it gives up) is asked to cancel with
//! `CancelRequested`, and asked again every [`StepPolicy::cancel_retry`] while it stays open.
//! The payment service decides, since only it knows whether the pivot (the charge) happened;
//! every step after that decision is idempotent, so asking again only re-drives what a lost or
//! skipped message left undone. Nothing is written for a saga that finishes in time.

use super::ServiceContext;
use crate::config::StepPolicy;
use crate::error::SagaError;
use crate::machine::Ending;
use crate::message::{Body, Envelope, Event};
use crate::outbox::Staged;
use common::domain::OrderId;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Orders looked at per scan; the next tick takes the rest.
const SCAN_LIMIT: i64 = 256;

/// Requests the cancel of every late saga, until shutdown.
pub async fn watch(ctx: ServiceContext, policy: StepPolicy, mut shutdown: watch::Receiver<bool>) {
    let tick =
        (policy.step_timeout / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        let late = match overdue(&ctx, &policy).await {
            Ok(late) => late,
            Err(err) => {
                tracing::warn!(cause = %err, "scanning for late sagas failed");
                continue;
            }
        };
        for order in late {
            if let Err(err) = request_cancel(&ctx, &policy, order).await {
                tracing::warn!(cause = %err, order_id = %order, "requesting a cancel failed");
            }
        }
    }
}

/// PENDING orders past the deadline whose last request (if any) is due again, oldest first.
async fn overdue(ctx: &ServiceContext, policy: &StepPolicy) -> Result<Vec<OrderId>, SagaError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT o.id FROM orders o LEFT JOIN cancel_requests c ON c.order_id = o.id \
         WHERE o.status = 'PENDING' AND o.created_at < now() - make_interval(secs => $1) \
         AND (c.next_at IS NULL OR c.next_at <= now()) \
         ORDER BY o.created_at LIMIT $2",
    )
    .bind(policy.saga_deadline().as_secs_f64())
    .bind(SCAN_LIMIT)
    .fetch_all(&ctx.pool)
    .await
    .map_err(SagaError::db("scanning for late sagas"))?;
    Ok(ids.into_iter().map(OrderId).collect())
}

/// In one transaction: the order still PENDING (locked), the request counted, the event queued.
async fn request_cancel(
    ctx: &ServiceContext,
    policy: &StepPolicy,
    order: OrderId,
) -> Result<(), SagaError> {
    // Until its rows are handed over (`RelayHandle::turn`).
    let _turn = ctx.relay.turn(order).await;
    let mut tx = ctx
        .pool
        .begin()
        .await
        .map_err(SagaError::db("beginning a transaction"))?;
    let pending: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM orders WHERE id = $1 AND status = 'PENDING' FOR UPDATE")
            .bind(order.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(SagaError::db("locking a late order"))?;
    if pending.is_none() {
        // It finished since the scan.
        return Ok(());
    }
    let attempts: i32 = sqlx::query_scalar(
        "INSERT INTO cancel_requests (order_id, attempts, next_at) \
         VALUES ($1, 1, now() + make_interval(secs => $2)) \
         ON CONFLICT (order_id) DO UPDATE \
         SET attempts = cancel_requests.attempts + 1, next_at = EXCLUDED.next_at \
         RETURNING attempts",
    )
    .bind(order.0)
    .bind(policy.cancel_retry().as_secs_f64())
    .fetch_one(&mut *tx)
    .await
    .map_err(SagaError::db("recording a cancel request"))?;
    let reason = Ending::Aborted("timeout:saga".into()).to_text();
    let event = Envelope::new(order, Body::Event(Event::CancelRequested { reason }));
    let mut staged = Staged::default();
    staged
        .enqueue(&mut tx, &ctx.kafka.topics.events(), &event)
        .await?;
    tx.commit()
        .await
        .map_err(SagaError::db("committing a cancel request"))?;
    ctx.relay.committed(staged);
    tracing::info!(order_id = %order, attempts, "saga outlived its deadline; cancel requested");
    ctx.metrics.add("saga.timeouts", 1);
    if attempts > 1 {
        ctx.metrics.add("saga.retries", 1);
    }
    Ok(())
}
