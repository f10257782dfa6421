//! How long a protocol takes, after a fault heals, to finish every order begun before the heal
//! (DESIGN §6: "for sagas, time from heal until every saga is terminal"): read from the
//! databases, so it covers what no client sees — compensations, in-doubt branches.

use common::storage::{Databases, Store};
use sqlx::types::chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// The database's clock (the timestamps compared against are the database's own).
pub async fn db_now(dbs: &Databases) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(dbs.pool(Store::Orders))
        .await
}

/// Work begun before `since` and not finished: orders still PENDING (sagas under way) and
/// prepared transactions awaiting their decision (2PC branches), in every database.
pub async fn unfinished_before(dbs: &Databases, since: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    let mut count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE status = 'PENDING' AND created_at < $1",
    )
    .bind(since)
    .fetch_one(dbs.pool(Store::Orders))
    .await?;
    for store in Store::ALL {
        let prepared: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() AND prepared < $1",
        )
        .bind(since)
        .fetch_one(dbs.pool(store))
        .await?;
        count += prepared;
    }
    Ok(count)
}

/// Polls until nothing begun before `since` is unfinished; how long that took after `started`
/// (`Ok(None)`: not within `limit`), or why the databases could not tell.
pub async fn settle_time(
    dbs: &Databases,
    since: DateTime<Utc>,
    started: Instant,
    limit: Duration,
) -> Result<Option<Duration>, sqlx::Error> {
    while started.elapsed() < limit {
        if unfinished_before(dbs, since).await? == 0 {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}
