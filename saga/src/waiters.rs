//! Clients waiting in `PlaceOrder` for a saga's final outcome. Whoever records the outcome (the
//! orchestrator, or the order service in choreography) wakes them; a waiter whose deadline passes
//! simply drops its receiver and answers UNDECIDED.

use common::domain::{OrderId, OutcomeKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A final outcome as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub kind: OutcomeKind,
    pub reason: String,
    pub decided_unix_us: u64,
}

#[derive(Clone, Default)]
pub struct OutcomeWaiters {
    inner: Arc<Mutex<HashMap<OrderId, Vec<oneshot::Sender<Decided>>>>>,
}

impl OutcomeWaiters {
    /// Registers before the saga can finish, so the outcome cannot slip past unseen.
    pub fn register(&self, order: OrderId) -> oneshot::Receiver<Decided> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .lock()
            .expect("waiters lock")
            .entry(order)
            .or_default()
            .push(tx);
        rx
    }

    pub fn decide(&self, order: OrderId, decided: Decided) {
        let senders = self
            .inner
            .lock()
            .expect("waiters lock")
            .remove(&order)
            .unwrap_or_default();
        for sender in senders {
            let _ = sender.send(decided.clone());
        }
    }

    /// Drops waiters whose clients gave up (their receivers are gone).
    pub fn forget_abandoned(&self, order: OrderId) {
        let mut inner = self.inner.lock().expect("waiters lock");
        if let Some(list) = inner.get_mut(&order) {
            list.retain(|s| !s.is_closed());
            if list.is_empty() {
                inner.remove(&order);
            }
        }
    }
}
