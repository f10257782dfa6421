//! Marks acknowledged rows published, many in one statement: under load one mark covers the acks
//! of many handlers' transactions.

use super::Claims;
use crate::error::SagaError;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Most rows one mark covers.
const MARK_BATCH: usize = 4096;

/// Marks until `shutdown` (or until the publisher is gone). A mark that fails is retried: its
/// rows stay claimed meanwhile, so the sweep does not send them again.
pub(super) async fn run(
    pool: PgPool,
    mut acked: mpsc::UnboundedReceiver<i64>,
    claims: Claims,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ids = Vec::with_capacity(MARK_BATCH);
    loop {
        let received = tokio::select! {
            received = acked.recv_many(&mut ids, MARK_BATCH) => received,
            _ = shutdown.changed() => return,
        };
        if received == 0 {
            return;
        }
        // A crash here publishes these rows again after the restart: nothing is lost.
        common::failpoint::pass("relay-after-publish").await;
        let mut backoff = Duration::from_millis(50);
        while let Err(err) = mark(&pool, &ids).await {
            tracing::warn!(cause = %err, ?backoff, rows = ids.len(), "marking outbox rows failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        claims.release(&ids);
        ids.clear();
    }
}

/// The mark need not be forced to disk: if it is lost, the rows go out again and the consumers'
/// dedupe absorbs them. Not forcing the flush halves the relay's fsyncs.
async fn mark(pool: &PgPool, ids: &[i64]) -> Result<(), SagaError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(SagaError::db("beginning a mark"))?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await
        .map_err(SagaError::db("relaxing the mark's commit"))?;
    sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await
        .map_err(SagaError::db("marking outbox rows published"))?;
    tx.commit()
        .await
        .map_err(SagaError::db("committing a mark"))
}
