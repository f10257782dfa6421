//! Process plumbing shared by the orchestrator and the services: the shutdown signal fanned out to
//! every task, and the outcome message `PlaceOrder` answers with.

use crate::config::AdmissionPolicy;
use crate::waiters::{Decided, OutcomeWaiters};
use common::admission::{Admission, Slot};
use common::api::{pb, unix_micros_now};
use common::domain::{Order, OrderId, OutcomeKind};
use common::metrics::MetricsRegistry;
use std::future::Future;
use std::time::Instant;
use tokio::sync::watch;

/// Turns the caller's shutdown future into a watch channel every task can observe; the sender is
/// kept so the process itself can also stop its tasks (e.g. when the server fails).
pub fn shutdown_channel<F>(shutdown: F) -> (watch::Sender<bool>, watch::Receiver<bool>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = watch::channel(false);
    let trigger = tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = trigger.send(true);
    });
    (tx, rx)
}

/// Resolves once shutdown was requested.
pub async fn requested(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The client's answer: the final outcome if known, else UNDECIDED with the acceptance time.
pub fn outcome_message(
    order: &Order,
    received_us: u64,
    accepted_us: u64,
    decided: Option<Decided>,
) -> pb::Outcome {
    let (kind, reason, decided_us) = match decided {
        Some(d) => (d.kind, d.reason, d.decided_unix_us),
        None => (OutcomeKind::Undecided, String::new(), 0),
    };
    pb::Outcome {
        order_id: order.id.to_string(),
        kind: pb::OutcomeKind::from(kind) as i32,
        reason,
        amount_cents: order.amount().0,
        received_unix_us: received_us,
        accepted_unix_us: accepted_us,
        decided_unix_us: decided_us,
    }
}

/// A front's admission limit, its knobs recorded as `saga.max_in_flight` and
/// `saga.admission_reserve_ms`.
pub fn front_admission(policy: &AdmissionPolicy, metrics: &MetricsRegistry) -> Admission {
    Admission::new(
        policy.max_in_flight,
        policy.reserve,
        "saga",
        metrics.clone(),
    )
}

/// Admits `order` at a front, or answers it ABORTED "overloaded" (nothing written) when shed.
pub async fn admit(
    admission: &Admission,
    order: &Order,
    received_us: u64,
    deadline: Instant,
) -> Result<Slot, pb::Outcome> {
    admission.admit(deadline).await.ok_or_else(|| {
        outcome_message(
            order,
            received_us,
            0,
            Some(Decided {
                kind: OutcomeKind::Aborted,
                reason: admission.overloaded(),
                decided_unix_us: unix_micros_now(),
            }),
        )
    })
}

/// Runs a saga's `start` with the order's admission `slot` held in `waiters` from before the
/// saga can finish until its outcome; frees it at once unless `began` says the saga began here
/// (not a repeat, no error). Run it uncancellable, so a client that hangs up cannot leak a slot.
pub async fn start_holding<T, E>(
    waiters: &OutcomeWaiters,
    order: OrderId,
    slot: Slot,
    start: impl Future<Output = Result<T, E>>,
    began: impl Fn(&T) -> bool,
) -> Result<T, E> {
    // A repeat of a saga in flight finds its first attempt's slot there; this one drops.
    let held = waiters.hold(order, slot);
    let result = start.await;
    if held && !result.as_ref().is_ok_and(&began) {
        waiters.release(order);
    }
    result
}

/// The client's deadline: its own, else the default.
pub fn client_deadline(deadline_ms: u32) -> std::time::Duration {
    if deadline_ms == 0 {
        crate::config::DEFAULT_CLIENT_DEADLINE
    } else {
        std::time::Duration::from_millis(u64::from(deadline_ms))
    }
}

/// Runs a task that the process cannot live without (its consumer): when it ends, for whatever
/// reason, the whole process is asked to stop, so a fatal error surfaces as an exit instead of a
/// process that serves but no longer consumes.
pub async fn essential<T>(task: impl Future<Output = T>, stop: watch::Sender<bool>) -> T {
    let result = task.await;
    let _ = stop.send(true);
    result
}

/// Runs `work` — a step's database transaction — in its own task and waits for it. A client
/// that hangs up cancels its request's handler; were the transaction part of that future, a
/// cancelled sqlx `begin()` could return its pooled connection still inside an open
/// transaction (transact-rs/sqlx#4393), and the next borrower would run inside it.
pub async fn uncancellable<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::spawn(work)
        .await
        .map_err(|e| tonic::Status::internal(format!("a request's transaction failed: {e}")))
}
