//! 2PC against real PostgreSQL and real gRPC over TCP, every participant and the coordinator a
//! child process: happy path, rejects, crashes at each fail point, concurrency, duplicates.

mod concurrency;
mod crashes;
mod outcomes;
mod overload;
mod support;
