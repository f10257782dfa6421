//! The crate's errors, with a classifier for what is worth retrying.

use common::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum TwoPcError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{peer} answered {code:?}: {message}")]
    Rpc {
        peer: String,
        code: tonic::Code,
        message: String,
    },
    #[error("{peer} did not answer within {timeout_ms} ms")]
    Timeout { peer: String, timeout_ms: u64 },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("cannot listen or connect: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl TwoPcError {
    pub fn rpc(peer: &str, status: tonic::Status) -> TwoPcError {
        TwoPcError::Rpc {
            peer: peer.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

impl From<TwoPcError> for tonic::Status {
    fn from(err: TwoPcError) -> tonic::Status {
        match err {
            TwoPcError::BadRequest(msg) => tonic::Status::invalid_argument(msg),
            other => tonic::Status::unavailable(other.to_string()),
        }
    }
}
