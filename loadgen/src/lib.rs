//! The lab's load generator. For now it provisions the local environment, seeds a data set and
//! runs the invariant checker; the load, fault and report parts come with the load-generator issue.

pub mod check;
pub mod cli;

/// Why a loadgen command failed. Each variant carries the underlying error's own message.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Env(#[from] common::env::EnvError),
    #[error(transparent)]
    Storage(#[from] common::storage::StorageError),
    #[error(transparent)]
    DataSet(#[from] common::datagen::InvalidDataSetSpec),
}
