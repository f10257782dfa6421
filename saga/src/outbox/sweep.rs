//! The sweep: publishes committed rows that no hand-off brought — those of a process that crashed
//! between its commit and its hand-off, or before their ack was marked, and those whose send
//! failed — and deletes rows published long ago.

use super::{Claims, Handoff, RelayPolicy, Row};
use crate::error::SagaError;
use common::metrics::MetricsRegistry;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Sweeps every `poll_interval` until `shutdown`; at once again after a full batch.
pub(super) async fn run(
    pool: PgPool,
    publisher: mpsc::UnboundedSender<Handoff>,
    claims: Claims,
    policy: RelayPolicy,
    metrics: MetricsRegistry,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pruned = Instant::now();
    loop {
        if pruned.elapsed() > policy.retention / 10 {
            pruned = Instant::now();
            if let Err(err) = prune(&pool, policy.retention).await {
                tracing::warn!(cause = %err, "pruning the outbox failed");
            }
        }
        let found = match unclaimed(&pool, &claims, &policy).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(cause = %err, "sweeping the outbox failed; retrying");
                Vec::new()
            }
        };
        let full = found.len() as i64 >= policy.batch;
        // Claimed here, before the publisher sees them, so that the next sweep skips them.
        let rows: Vec<Row> = found.into_iter().filter(|r| claims.claim(r.id)).collect();
        if !rows.is_empty() {
            metrics.add("relay.swept", rows.len() as u64);
            if publisher.send(Handoff { rows, swept: true }).is_err() {
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Unpublished rows older than the grace that nobody claimed, in id order.
async fn unclaimed(
    pool: &PgPool,
    claims: &Claims,
    policy: &RelayPolicy,
) -> Result<Vec<Row>, SagaError> {
    let rows: Vec<(i64, String, String, Vec<u8>, i64)> = sqlx::query_as(
        "SELECT id, topic, msg_key, payload, \
                (EXTRACT(EPOCH FROM clock_timestamp() - created_at) * 1000000)::bigint \
         FROM outbox \
         WHERE published_at IS NULL \
           AND created_at < clock_timestamp() - $2 * interval '1 microsecond' \
           AND NOT (id = ANY($3)) \
         ORDER BY id LIMIT $1",
    )
    .bind(policy.batch)
    .bind(policy.sweep_grace.as_micros() as f64)
    .bind(claims.snapshot())
    .fetch_all(pool)
    .await
    .map_err(SagaError::db("sweeping the outbox"))?;
    let now = Instant::now();
    Ok(rows
        .into_iter()
        .map(|(id, topic, key, payload, age_us)| Row {
            id,
            topic,
            key,
            payload,
            inserted: now
                .checked_sub(crate::telemetry::micros(age_us))
                .unwrap_or(now),
        })
        .collect())
}

/// Deletes rows published longer than `retention` ago.
async fn prune(pool: &PgPool, retention: Duration) -> Result<(), SagaError> {
    sqlx::query(
        "DELETE FROM outbox WHERE published_at < clock_timestamp() - $1 * interval '1 microsecond'",
    )
    .bind(retention.as_micros() as f64)
    .execute(pool)
    .await
    .map_err(SagaError::db("pruning the outbox"))?;
    Ok(())
}
