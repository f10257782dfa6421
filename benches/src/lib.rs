//! What the benches share: criterion's time budget, so a whole `cargo bench` stays under 15
//! minutes on a 2-core machine (each routine here is microseconds, so 1 s of warm-up and 3 s of
//! samples still give criterion thousands of iterations).

use criterion::Criterion;
use std::time::Duration;

/// Criterion with the lab's time budget per bench function.
pub fn budget() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
