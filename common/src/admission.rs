//! A front's admission limit, the same for every protocol: at most `limit` orders in flight (from
//! admission until their outcome is settled), and past that, orders wait in line (FIFO) only as
//! long as `reserve` still fits before the client's deadline. Orders beyond capacity are turned
//! away at once, untouched, instead of joining a backlog in which every order would outlive its
//! deadline: goodput stays at capacity rather than collapsing.
//!
//! The reserve is what an admitted order needs to finish: 2PC's prepare timeout, a saga's
//! configured reserve.

use crate::metrics::MetricsRegistry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One admitted order's place; the order stops counting when it is dropped.
pub type Slot = OwnedSemaphorePermit;

/// Counter of orders turned away.
pub const SHED: &str = "shed";
/// Histogram of the wait for a slot, admitted or not.
pub const WAIT: &str = "admission_wait";

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
    reserve: Duration,
    metrics: MetricsRegistry,
}

impl Admission {
    /// Records its two knobs as `<prefix>.max_in_flight` and `<prefix>.admission_reserve_ms`.
    pub fn new(
        limit: usize,
        reserve: Duration,
        prefix: &str,
        metrics: MetricsRegistry,
    ) -> Admission {
        metrics.set_setting(format!("{prefix}.max_in_flight"), limit);
        metrics.set_setting(
            format!("{prefix}.admission_reserve_ms"),
            reserve.as_millis(),
        );
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            reserve,
            metrics,
        }
    }

    /// A slot, or `None` (counted as shed) when none came free while `reserve` still fitted
    /// before `deadline`.
    pub async fn admit(&self, deadline: Instant) -> Option<Slot> {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.reserve);
        let waited = Instant::now();
        let slot = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
        self.metrics.record(WAIT, waited.elapsed());
        match slot {
            Ok(Ok(slot)) => Some(slot),
            // The semaphore is never closed; a timeout is the only way here.
            _ => {
                self.metrics.add(SHED, 1);
                None
            }
        }
    }

    /// The reason a shed order is answered with.
    pub fn overloaded(&self) -> String {
        format!(
            "overloaded: {} orders in flight, none finished in time",
            self.limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_limit_an_order_waits_only_while_its_reserve_fits() {
        let metrics = MetricsRegistry::new("test");
        let admission = Admission::new(1, Duration::from_millis(50), "test", metrics.clone());
        let far = Instant::now() + Duration::from_secs(5);
        let first = admission.admit(far).await.expect("a free slot");
        // Too close to its deadline to wait at all.
        let near = Instant::now() + Duration::from_millis(40);
        assert!(admission.admit(near).await.is_none());
        // Waits, and gets the slot once the first order finishes.
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(far).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiting.await.unwrap());
        assert!(admission.overloaded().starts_with("overloaded: 1 orders"));
        let snapshot = metrics.snapshot(false);
        assert_eq!(snapshot.counters.get(SHED).copied(), Some(1));
        assert_eq!(
            snapshot
                .settings
                .get("test.max_in_flight")
                .map(String::as_str),
            Some("1")
        );
    }
}
