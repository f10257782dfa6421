//! Clients waiting in `PlaceOrder` for a saga's final outcome. Whoever records the outcome (the
//! orchestrator, or the order service in choreography) wakes them; a waiter whose deadline passes
//! simply drops its receiver and answers UNDECIDED. The front's admission slot of each saga it
//! started is held here too, until that same outcome: a saga counts as in flight until it is
//! final, however long after its client gave up.

use common::admission::Slot;
use common::domain::{OrderId, OutcomeKind};
use std::collections::hash_map::Entry;
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
    inner: Arc<Mutex<Waiting>>,
}

#[derive(Default)]
struct Waiting {
    clients: HashMap<OrderId, Vec<oneshot::Sender<Decided>>>,
    slots: HashMap<OrderId, Slot>,
}

impl OutcomeWaiters {
    /// Registers before the saga can finish, so the outcome cannot slip past unseen.
    pub fn register(&self, order: OrderId) -> oneshot::Receiver<Decided> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .lock()
            .expect("waiters lock")
            .clients
            .entry(order)
            .or_default()
            .push(tx);
        rx
    }

    /// Holds `order`'s admission slot until its outcome, taken before the saga can finish. False
    /// (and `slot` dropped) when the order already holds one: a repeated request of a saga in
    /// flight.
    pub fn hold(&self, order: OrderId, slot: Slot) -> bool {
        match self.inner.lock().expect("waiters lock").slots.entry(order) {
            Entry::Occupied(_) => false,
            Entry::Vacant(free) => {
                free.insert(slot);
                true
            }
        }
    }

    /// Frees a slot `hold` took for a saga that did not start (a repeat of a finished one, or a
    /// failed start).
    pub fn release(&self, order: OrderId) {
        self.inner
            .lock()
            .expect("waiters lock")
            .slots
            .remove(&order);
    }

    /// Sagas of this process admitted and not yet final.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.inner.lock().expect("waiters lock").slots.len()
    }

    pub fn decide(&self, order: OrderId, decided: Decided) {
        let (senders, slot) = {
            let mut inner = self.inner.lock().expect("waiters lock");
            (
                inner.clients.remove(&order).unwrap_or_default(),
                inner.slots.remove(&order),
            )
        };
        drop(slot);
        for sender in senders {
            let _ = sender.send(decided.clone());
        }
    }

    /// Drops waiters whose clients gave up (their receivers are gone).
    pub fn forget_abandoned(&self, order: OrderId) {
        let clients = &mut self.inner.lock().expect("waiters lock").clients;
        if let Some(list) = clients.get_mut(&order) {
            list.retain(|s| !s.is_closed());
            if list.is_empty() {
                clients.remove(&order);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn a_slot_is_held_until_the_outcome_and_a_repeat_takes_none() {
        let slots = Arc::new(Semaphore::new(2));
        let waiters = OutcomeWaiters::default();
        let order = OrderId::new_random();
        let slot = || slots.clone().try_acquire_owned().expect("a free slot");
        assert!(waiters.hold(order, slot()));
        // A repeated request of the same saga: its slot goes back at once.
        assert!(!waiters.hold(order, slot()));
        assert_eq!((waiters.in_flight(), slots.available_permits()), (1, 1));
        // The client gave up: the saga still counts.
        drop(waiters.register(order));
        waiters.forget_abandoned(order);
        assert_eq!(slots.available_permits(), 1);
        waiters.decide(
            order,
            Decided {
                kind: OutcomeKind::Committed,
                reason: String::new(),
                decided_unix_us: 1,
            },
        );
        assert_eq!((waiters.in_flight(), slots.available_permits()), (0, 2));
        // A saga that did not start here frees its slot.
        let other = OrderId::new_random();
        assert!(waiters.hold(other, slot()));
        waiters.release(other);
        assert_eq!(slots.available_permits(), 2);
    }
}
