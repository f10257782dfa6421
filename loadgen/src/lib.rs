//! The load generator: for now the environment set-up and the invariant check.
