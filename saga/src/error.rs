//! The crate's one error type. Handlers retry only what [`SagaError::is_retryable`] says may
//! succeed later (a database or broker hiccup); anything else is a bug or bad input and is
//! reported, never retried forever.

use common::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("{what} failed: {source}")]
    Database {
        what: &'static str,
        source: sqlx::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("Kafka {what} failed: {source}")]
    Kafka {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("message at {topic}/{partition}@{offset} does not decode: {reason}")]
    Undecodable {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("saga {order_id} holds state {state:?}, which this build does not know")]
    UnknownSagaState { order_id: String, state: String },
    #[error("stored order {order_id} does not decode: {source}")]
    BadStoredOrder {
        order_id: String,
        source: serde_json::Error,
    },
    #[error("serving gRPC failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("{0}")]
    Config(String),
}

impl SagaError {
    /// Closure for `map_err` on a query, naming what was attempted.
    pub fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> SagaError {
        move |source| SagaError::Database { what, source }
    }

    /// Whether the same work may succeed if tried again: connection and transient database
    /// errors (including serialization failures and deadlocks) and broker errors. Decoding and
    /// schema errors never heal by themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            SagaError::Database { source, .. } => match source {
                sqlx::Error::Database(db) => matches!(
                    db.code().as_deref(),
                    Some("40001" | "40P01" | "55P03" | "57P01")
                ),
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
                _ => false,
            },
            SagaError::Storage(StorageError::Connect { .. } | StorageError::Query { .. }) => true,
            SagaError::Kafka { .. } => true,
            _ => false,
        }
    }
}
