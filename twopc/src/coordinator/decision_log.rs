//! The coordinator's durable decision log (presumed abort), in its own PostgreSQL database.
//!
//! Durability contract: a COMMIT record is forced (a committed INSERT under
//! `synchronous_commit=on`, so its WAL is flushed) before any Commit message is sent; no record
//! means ABORT. Concurrent decisions share one forced write (group commit): a single writer task
//! drains every request waiting at that moment into one INSERT. The END record (`completed_at`)
//! is written lazily, unforced, in batches: losing it only means recovery re-sends a decision,
//! which participants treat as a no-op.

use super::ports::DecisionRecords;
use common::metrics::MetricsRegistry;
use futures::future::BoxFuture;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Most records one forced write carries.
const MAX_BATCH: usize = 512;

struct CommitRecord {
    gid: String,
    order_id: uuid::Uuid,
    participants: Vec<String>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A logged decision whose END record is missing: recovery re-drives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnfinishedCommit {
    pub gid: String,
    pub participants: Vec<String>,
}

#[derive(Clone)]
pub struct DecisionLog {
    pool: PgPool,
    commits: mpsc::Sender<CommitRecord>,
    ends: mpsc::UnboundedSender<String>,
}

impl DecisionLog {
    /// Starts the group-commit writer and the lazy END writer.
    pub fn start(pool: PgPool, metrics: MetricsRegistry) -> DecisionLog {
        let (commits, commit_rx) = mpsc::channel(4 * MAX_BATCH);
        let (ends, end_rx) = mpsc::unbounded_channel();
        tokio::spawn(group_commit_writer(pool.clone(), commit_rx, metrics));
        tokio::spawn(end_writer(pool.clone(), end_rx));
        DecisionLog {
            pool,
            commits,
            ends,
        }
    }

    /// Forces a COMMIT record. `Ok` means durable. `Err` means unknown: the write may or may not
    /// have reached the disk (e.g. the connection broke during COMMIT), so the caller must read
    /// the log before deciding anything.
    pub async fn force_commit(
        &self,
        gid: &str,
        order_id: uuid::Uuid,
        participants: &[&str],
    ) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        let record = CommitRecord {
            gid: gid.to_string(),
            order_id,
            participants: participants.iter().map(|p| p.to_string()).collect(),
            done,
        };
        self.commits
            .send(record)
            .await
            .map_err(|_| "the log writer stopped".to_string())?;
        result
            .await
            .map_err(|_| "the log writer stopped".to_string())?
    }

    /// Whether a COMMIT record exists for `gid` (`Err` when the log cannot be read).
    pub async fn is_committed(&self, gid: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM decisions WHERE gid = $1)")
            .bind(gid)
            .fetch_one(&self.pool)
            .await
    }

    /// Queues the END record of `gid` (not forced).
    pub fn mark_complete(&self, gid: &str) {
        let _ = self.ends.send(gid.to_string());
    }

    /// Every COMMIT without END, oldest first.
    pub async fn unfinished(&self) -> Result<Vec<UnfinishedCommit>, sqlx::Error> {
        let rows: Vec<(String, Vec<String>)> =
            sqlx::query_as("SELECT gid, participants FROM decisions WHERE completed_at IS NULL ORDER BY decided_at")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(gid, participants)| UnfinishedCommit { gid, participants })
            .collect())
    }
}

async fn group_commit_writer(
    pool: PgPool,
    mut requests: mpsc::Receiver<CommitRecord>,
    metrics: MetricsRegistry,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        let result = write_commits(&pool, &batch)
            .await
            .map_err(|e| e.to_string());
        metrics.record("log_force", started.elapsed());
        metrics.add("log_forces", 1);
        metrics.add("log_records", batch.len() as u64);
        if let Err(err) = &result {
            tracing::error!(cause = %err, records = batch.len(), "forcing COMMIT records failed; outcome unknown");
        }
        for record in batch.drain(..) {
            let _ = record.done.send(result.clone());
        }
    }
}

async fn write_commits(pool: &PgPool, batch: &[CommitRecord]) -> Result<(), sqlx::Error> {
    let gids: Vec<&str> = batch.iter().map(|r| r.gid.as_str()).collect();
    let orders: Vec<uuid::Uuid> = batch.iter().map(|r| r.order_id).collect();
    // Postgres has no array-of-arrays UNNEST into TEXT[] columns: join and split instead.
    let participants: Vec<String> = batch.iter().map(|r| r.participants.join(",")).collect();
    sqlx::query(
        "INSERT INTO decisions (gid, order_id, participants)
         SELECT g, o, string_to_array(p, ',') FROM UNNEST($1::text[], $2::uuid[], $3::text[]) AS t(g, o, p)
         ON CONFLICT (gid) DO NOTHING",
    )
    .bind(gids)
    .bind(orders)
    .bind(participants)
    .execute(pool)
    .await?;
    Ok(())
}

async fn end_writer(pool: PgPool, mut gids: mpsc::UnboundedReceiver<String>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while gids.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = async {
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE decisions SET completed_at = now() WHERE gid = ANY($1)")
                .bind(&batch)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        if let Err(err) = result {
            // Harmless: recovery re-sends these decisions and participants ignore repeats.
            tracing::warn!(cause = %err, "writing END records failed");
        }
        batch.clear();
        // Let ENDs accumulate a little: they are not urgent, and fewer writes leave the disk to
        // the forced COMMIT records.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl DecisionRecords for DecisionLog {
    fn force_commit<'a>(
        &'a self,
        gid: &'a str,
        order_id: uuid::Uuid,
        participants: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(DecisionLog::force_commit(self, gid, order_id, participants))
    }

    fn is_committed<'a>(&'a self, gid: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            DecisionLog::is_committed(self, gid)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn mark_complete(&self, gid: &str) {
        DecisionLog::mark_complete(self, gid)
    }
}
