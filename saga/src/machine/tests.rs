//! Protocol traces of the orchestrated saga, without Kafka or SQL.

use super::*;
use common::domain::{Cents, CustomerId, OrderId, OrderLine, Sku};

fn order() -> Order {
    Order::new(
        OrderId::new_random(),
        CustomerId(1),
        vec![OrderLine {
            sku: Sku(1),
            qty: 1,
            unit_price: Cents(5),
        }],
    )
    .unwrap()
}

/// Feeds replies in turn and returns the states visited and the steps commanded.
fn trace(mut saga: Saga, replies: &[StepResult]) -> (Saga, Vec<Step>) {
    let mut steps = Vec::new();
    for result in replies {
        let step = saga.state.awaited_step().expect("not terminal yet");
        match saga.on_reply(step, *result) {
            Transition::Advance {
                saga: next,
                command,
            } => {
                steps.extend(command.map(|c| c.step()));
                saga = next;
            }
            Transition::Stale => panic!("reply for the awaited step was stale"),
        }
    }
    (saga, steps)
}

#[test]
fn happy_path_runs_every_forward_step() {
    let (saga, first) = Saga::start(order());
    assert_eq!(first.step(), Step::CreateOrder);
    let (saga, steps) = trace(saga, &[StepResult::Done; 5]);
    assert_eq!(
        steps,
        vec![
            Step::ReserveStock,
            Step::ChargePayment,
            Step::CommitStock,
            Step::ConfirmOrder
        ]
    );
    assert_eq!(saga.state, SagaState::Confirmed);
    assert_eq!(saga.outcome(), Some(OutcomeKind::Committed));
}

#[test]
fn payment_refusal_releases_stock_then_cancels() {
    let refused = StepResult::Rejected {
        reason: RejectReason::InsufficientFunds,
    };
    let (saga, _) = Saga::start(order());
    let (saga, steps) = trace(
        saga,
        &[
            StepResult::Done,
            StepResult::Done,
            refused,
            StepResult::Done,
            StepResult::Done,
        ],
    );
    assert_eq!(
        steps,
        vec![
            Step::ReserveStock,
            Step::ChargePayment,
            Step::ReleaseStock,
            Step::CancelOrder
        ]
    );
    assert_eq!(saga.outcome(), Some(OutcomeKind::Rejected));
    assert_eq!(
        saga.ending,
        Some(Ending::Rejected(RejectReason::InsufficientFunds))
    );
}

#[test]
fn stock_refusal_charges_nothing() {
    let refused = StepResult::Rejected {
        reason: RejectReason::OutOfStock,
    };
    let (saga, _) = Saga::start(order());
    let (saga, steps) = trace(saga, &[StepResult::Done, refused, StepResult::Done]);
    assert_eq!(steps, vec![Step::ReserveStock, Step::CancelOrder]);
    assert_eq!(saga.outcome(), Some(OutcomeKind::Rejected));
}

#[test]
fn timeouts_retry_then_compensate_the_unanswered_step_first() {
    let (saga, _) = Saga::start(order());
    let (mut saga, _) = trace(saga, &[StepResult::Done, StepResult::Done]);
    assert_eq!(saga.state, SagaState::ChargingPayment);
    for expected_attempt in 2..=3 {
        match saga.on_timeout(3) {
            Transition::Advance {
                saga: next,
                command,
            } => {
                assert_eq!(command.unwrap().step(), Step::ChargePayment);
                assert_eq!(next.attempts, expected_attempt);
                saga = next;
            }
            Transition::Stale => panic!("timeout ignored"),
        }
    }
    let Transition::Advance { saga, command } = saga.on_timeout(3) else {
        panic!("timeout ignored")
    };
    assert_eq!(command.unwrap().step(), Step::RefundPayment);
    let (saga, steps) = trace(saga, &[StepResult::Done; 3]);
    assert_eq!(steps, vec![Step::ReleaseStock, Step::CancelOrder]);
    assert_eq!(saga.outcome(), Some(OutcomeKind::Aborted));
}

#[test]
fn after_the_pivot_timeouts_only_retry() {
    let (saga, _) = Saga::start(order());
    let (mut saga, _) = trace(saga, &[StepResult::Done; 3]);
    assert_eq!(saga.state, SagaState::CommittingStock);
    for _ in 0..10 {
        let Transition::Advance {
            saga: next,
            command,
        } = saga.on_timeout(3)
        else {
            panic!()
        };
        assert_eq!(command.unwrap().step(), Step::CommitStock);
        saga = next;
    }
}

#[test]
fn refusal_after_a_resend_compensates_the_maybe_applied_step() {
    let (saga, _) = Saga::start(order());
    let (saga, _) = trace(saga, &[StepResult::Done]);
    let Transition::Advance { saga, .. } = saga.on_timeout(3) else {
        panic!()
    };
    let (saga, steps) = trace(
        saga,
        &[StepResult::Rejected {
            reason: RejectReason::OutOfStock,
        }],
    );
    assert_eq!(steps, vec![Step::ReleaseStock]);
    assert_eq!(saga.state, SagaState::ReleasingStock);
}

#[test]
fn stale_and_duplicate_replies_change_nothing() {
    let (saga, _) = Saga::start(order());
    let (saga, _) = trace(saga, &[StepResult::Done, StepResult::Done]);
    assert_eq!(
        saga.on_reply(Step::CreateOrder, StepResult::Done),
        Transition::Stale
    );
    assert_eq!(
        saga.on_reply(Step::ReserveStock, StepResult::Done),
        Transition::Stale
    );
    for state in SagaState::ALL {
        assert_eq!(SagaState::parse(state.as_str()), Some(state));
    }
    assert_eq!(
        Ending::outcome_of(Some("rejected:out_of_stock")),
        OutcomeKind::Rejected
    );
    assert_eq!(
        Ending::outcome_of(Some("aborted:timeout:charge_payment")),
        OutcomeKind::Aborted
    );
}
