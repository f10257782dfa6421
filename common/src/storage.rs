//! Each service's own PostgreSQL database: connecting, versioned migrations (sqlx) and seeding a
//! generated data set. Queries are checked at run time, so building needs no database.

use crate::datagen::DataSet;
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// One database of the lab, owned by one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    Orders,
    Payments,
    Inventory,
    Coordinator,
    Orchestrator,
}

impl Store {
    pub const ALL: [Store; 5] = [
        Store::Orders,
        Store::Payments,
        Store::Inventory,
        Store::Coordinator,
        Store::Orchestrator,
    ];

    /// The database's name in a lab-provisioned cluster.
    pub fn name(self) -> &'static str {
        match self {
            Store::Orders => "orders",
            Store::Payments => "payments",
            Store::Inventory => "inventory",
            Store::Coordinator => "coordinator",
            Store::Orchestrator => "orchestrator",
        }
    }

    /// The database's own migrations, then the outbox and processed-message tables that every
    /// database a saga process owns shares (versions from 1001, so the two never collide).
    fn migrators(self) -> Vec<Migrator> {
        let own = match self {
            Store::Orders => sqlx::migrate!("migrations/orders"),
            Store::Payments => sqlx::migrate!("migrations/payments"),
            Store::Inventory => sqlx::migrate!("migrations/inventory"),
            Store::Coordinator => sqlx::migrate!("migrations/coordinator"),
            Store::Orchestrator => sqlx::migrate!("migrations/orchestrator"),
        };
        match self {
            Store::Coordinator => vec![own],
            _ => vec![own, sqlx::migrate!("migrations/messaging")],
        }
    }

    /// The tables holding run state, emptied before a data set is seeded.
    fn run_tables(self) -> &'static str {
        match self {
            Store::Orders => "cancel_requests, order_lines, orders, outbox, processed_messages",
            Store::Payments => "voided_payments, payments, wallets, outbox, processed_messages",
            Store::Inventory => "reservations, stock, outbox, processed_messages",
            Store::Coordinator => "decisions",
            Store::Orchestrator => "sagas, outbox, processed_messages",
        }
    }
}

/// Where each database lives: a lab cluster or a deployment's URLs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseUrls {
    pub orders: String,
    pub payments: String,
    pub inventory: String,
    pub coordinator: String,
    pub orchestrator: String,
}

impl DatabaseUrls {
    /// Each store's URL from `url`.
    pub fn from_fn(url: impl Fn(Store) -> String) -> DatabaseUrls {
        DatabaseUrls {
            orders: url(Store::Orders),
            payments: url(Store::Payments),
            inventory: url(Store::Inventory),
            coordinator: url(Store::Coordinator),
            orchestrator: url(Store::Orchestrator),
        }
    }

    pub fn get(&self, store: Store) -> &str {
        match store {
            Store::Orders => &self.orders,
            Store::Payments => &self.payments,
            Store::Inventory => &self.inventory,
            Store::Coordinator => &self.coordinator,
            Store::Orchestrator => &self.orchestrator,
        }
    }

    pub fn get_mut(&mut self, store: Store) -> &mut String {
        match store {
            Store::Orders => &mut self.orders,
            Store::Payments => &mut self.payments,
            Store::Inventory => &mut self.inventory,
            Store::Coordinator => &mut self.coordinator,
            Store::Orchestrator => &mut self.orchestrator,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{store:?} database URL {url:?} is not a valid PostgreSQL URL ({source}); expected postgres://user@host:port/dbname")]
    BadUrl {
        store: Store,
        url: String,
        source: sqlx::Error,
    },
    #[error("cannot connect to the {store:?} database at {url}: {source}; is PostgreSQL running there and does the database exist?")]
    Connect {
        store: Store,
        url: String,
        source: sqlx::Error,
    },
    #[error("migrating the {store:?} database failed: {source}")]
    Migrate {
        store: Store,
        source: sqlx::migrate::MigrateError,
    },
    #[error("{what} in the {store:?} database failed: {source}")]
    Query {
        store: Store,
        what: &'static str,
        source: sqlx::Error,
    },
}

impl StorageError {
    pub(crate) fn query(
        store: Store,
        what: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> StorageError {
        move |source| StorageError::Query {
            store,
            what,
            source,
        }
    }
}

/// Whether a pool pings a connection each time it lends it out (sqlx's default). Off for every
/// protocol: that ping is a round trip on the latency path of every local transaction, while
/// after each release the connection is already checked twice off that path (our
/// [`outside_transaction`], then sqlx's own release ping). A connection that died while idle in
/// the pool fails its borrower's first statement, an error the borrower handles like any other
/// database error; sqlx closes a connection whose release check fails.
pub const POOL_TESTS_BEFORE_ACQUIRE: bool = false;

/// Records a process's pool knobs as settings, the same names for every protocol.
pub fn record_pool_settings(metrics: &crate::metrics::MetricsRegistry, pool_size: u32) {
    metrics.set_setting("db.pool_size", pool_size);
    metrics.set_setting("db.test_before_acquire", POOL_TESTS_BEFORE_ACQUIRE);
}

/// Opens a pool on one database. Fails fast (5 s) with an error naming the database and URL.
pub async fn connect(
    store: Store,
    url: &str,
    max_connections: u32,
) -> Result<PgPool, StorageError> {
    open_pool(store, url, max_connections, POOL_TESTS_BEFORE_ACQUIRE).await
}

async fn open_pool(
    store: Store,
    url: &str,
    max_connections: u32,
    test_before_acquire: bool,
) -> Result<PgPool, StorageError> {
    let options = PgConnectOptions::from_str(url).map_err(|source| StorageError::BadUrl {
        store,
        url: redact(url),
        source,
    })?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(test_before_acquire)
        .after_release(move |conn, _| Box::pin(outside_transaction(conn, store)))
        .connect_with(options)
        .await
        .map_err(|source| StorageError::Connect {
            store,
            url: redact(url),
            source,
        })
}

/// The pool's check of every returned connection (it runs after the borrower let go, off the
/// latency path, before sqlx's own release ping): a session still inside a transaction is closed, not lent out again. sqlx
/// 0.8 leaves one so when a `begin()` is cancelled mid-flight (transact-rs/sqlx#4393); the next
/// borrower's statements would run inside that stale transaction and keep its locks. A single
/// statement outside a transaction block starts its own, so both timestamps are equal; inside
/// one the transaction's is older.
async fn outside_transaction(
    conn: &mut sqlx::PgConnection,
    store: Store,
) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    // The simple query protocol on purpose: the extended one's Parse and Execute messages
    // count as separate statements and would make the two timestamps differ anyway.
    let check = sqlx::raw_sql("SELECT transaction_timestamp() < statement_timestamp()");
    let stale: bool = sqlx::Executor::fetch_one(conn, check).await?.try_get(0)?;
    if stale {
        tracing::warn!(
            store = store.name(),
            "a pooled connection came back inside a transaction; closed (sqlx#4393)"
        );
    }
    Ok(!stale)
}

/// A service process's pool on its own database, with its schema brought up to date first: a
/// deployment starts processes on empty databases, and each brings its own schema (a no-op
/// when current; concurrent starts serialize on sqlx's migration lock).
pub async fn connect_migrated(
    store: Store,
    url: &str,
    max_connections: u32,
) -> Result<PgPool, StorageError> {
    let pool = connect(store, url, max_connections).await?;
    migrate(store, &pool).await?;
    Ok(pool)
}

/// Applies every migration the database needs; applying twice is a no-op.
pub async fn migrate(store: Store, pool: &PgPool) -> Result<(), StorageError> {
    for mut migrator in store.migrators() {
        // Two migrators share one `_sqlx_migrations` table; each ignores the other's versions.
        migrator.set_ignore_missing(true);
        migrator
            .run(pool)
            .await
            .map_err(|source| StorageError::Migrate { store, source })?;
    }
    Ok(())
}

/// A pool on every database of the lab.
#[derive(Clone, Debug)]
pub struct Databases {
    pub orders: PgPool,
    pub payments: PgPool,
    pub inventory: PgPool,
    pub coordinator: PgPool,
    pub orchestrator: PgPool,
}

impl Databases {
    pub async fn connect(
        urls: &DatabaseUrls,
        max_connections: u32,
    ) -> Result<Databases, StorageError> {
        Ok(Databases {
            orders: connect(Store::Orders, &urls.orders, max_connections).await?,
            payments: connect(Store::Payments, &urls.payments, max_connections).await?,
            inventory: connect(Store::Inventory, &urls.inventory, max_connections).await?,
            coordinator: connect(Store::Coordinator, &urls.coordinator, max_connections).await?,
            orchestrator: connect(Store::Orchestrator, &urls.orchestrator, max_connections).await?,
        })
    }

    /// The pools of an observer — the lab seeding, settling and checking a run — which ping each
    /// connection before lending it: a database crash the run injected leaves dead connections
    /// in them, and none of their reads is on a measured path.
    pub async fn connect_observer(
        urls: &DatabaseUrls,
        max_connections: u32,
    ) -> Result<Databases, StorageError> {
        let pool = |store: Store| open_pool(store, urls.get(store), max_connections, true);
        Ok(Databases {
            orders: pool(Store::Orders).await?,
            payments: pool(Store::Payments).await?,
            inventory: pool(Store::Inventory).await?,
            coordinator: pool(Store::Coordinator).await?,
            orchestrator: pool(Store::Orchestrator).await?,
        })
    }

    pub fn pool(&self, store: Store) -> &PgPool {
        match store {
            Store::Orders => &self.orders,
            Store::Payments => &self.payments,
            Store::Inventory => &self.inventory,
            Store::Coordinator => &self.coordinator,
            Store::Orchestrator => &self.orchestrator,
        }
    }

    pub async fn migrate(&self) -> Result<(), StorageError> {
        for store in Store::ALL {
            migrate(store, self.pool(store)).await?;
        }
        Ok(())
    }

    /// Makes every database hold exactly `data` and nothing of earlier runs. Prepared
    /// transactions left in these databases are rolled back first (they would hold locks); the
    /// checker is the place that counts them, so run it before this.
    pub async fn reset_and_seed(&self, data: &DataSet) -> Result<(), StorageError> {
        for store in Store::ALL {
            let pool = self.pool(store);
            rollback_prepared(store, pool).await?;
            sqlx::query(&format!("TRUNCATE {}", store.run_tables()))
                .execute(pool)
                .await
                .map_err(StorageError::query(store, "truncate"))?;
        }
        let (customers, balances): (Vec<i32>, Vec<i64>) = data
            .wallets
            .iter()
            .map(|w| (w.customer.0, w.balance.0))
            .unzip();
        sqlx::query("INSERT INTO wallets (customer_id, balance_cents) SELECT * FROM UNNEST($1::int[], $2::bigint[])")
            .bind(customers)
            .bind(balances)
            .execute(&self.payments)
            .await
            .map_err(StorageError::query(Store::Payments, "seeding wallets"))?;
        let skus: Vec<i32> = data.stock.iter().map(|s| s.sku.0).collect();
        let available: Vec<i32> = data.stock.iter().map(|s| s.available).collect();
        let prices: Vec<i64> = data.stock.iter().map(|s| s.price.0).collect();
        sqlx::query(
            "INSERT INTO stock (sku, available, price_cents) SELECT * FROM UNNEST($1::int[], $2::int[], $3::bigint[])",
        )
        .bind(skus)
        .bind(available)
        .bind(prices)
        .execute(&self.inventory)
        .await
        .map_err(StorageError::query(Store::Inventory, "seeding stock"))?;
        Ok(())
    }
}

impl Databases {
    /// Writes the seed's dirty pages (and CREATE DATABASE's) out now, with a `CHECKPOINT`, so
    /// that flushing them does not land in the measured window. No `ANALYZE`: with statistics
    /// the planner reads the 100-row `stock` table by sequential scan instead of its primary
    /// key, a plan no earlier published run had; 32 closed-loop clients measured the same 2PC
    /// capacity either way (273 and 286 orders/s, within the runs' spread), so the tables keep
    /// the state earlier runs had. Autovacuum may analyze them in runs longer than a minute;
    /// postgres.log records every such run. CHECKPOINT needs a privileged role: refused (a
    /// deployment's plain user), it is skipped and logged.
    pub async fn settle_after_seed(&self) -> Result<(), StorageError> {
        // Every store, in case a deployment puts them on different servers (on one server the
        // checkpoints after the first find nothing to write).
        for store in Store::ALL {
            if let Err(e) = sqlx::query("CHECKPOINT").execute(self.pool(store)).await {
                tracing::warn!(?store, error = %e, "no CHECKPOINT after seeding (needs a privileged role)");
            }
        }
        Ok(())
    }
}

async fn rollback_prepared(store: Store, pool: &PgPool) -> Result<(), StorageError> {
    let gids: Vec<String> =
        sqlx::query_scalar("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")
            .fetch_all(pool)
            .await
            .map_err(StorageError::query(store, "listing prepared transactions"))?;
    for gid in gids {
        // The gid is not a bind parameter in PostgreSQL's grammar: quote it as a literal.
        sqlx::query(&format!("ROLLBACK PREPARED {}", quote_literal(&gid)))
            .execute(pool)
            .await
            .map_err(StorageError::query(
                store,
                "rolling back a prepared transaction",
            ))?;
    }
    Ok(())
}

/// A SQL string literal, for the statements that take no bind parameters (PREPARE TRANSACTION,
/// COMMIT PREPARED, ROLLBACK PREPARED, CREATE DATABASE).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://lab:secret@127.0.0.1:5/orders"),
            "postgres://lab:***@127.0.0.1:5/orders"
        );
        assert_eq!(
            redact("postgres://lab@127.0.0.1:5/orders"),
            "postgres://lab@127.0.0.1:5/orders"
        );
        assert_eq!(quote_literal("a'b"), "'a''b'");
    }
}
