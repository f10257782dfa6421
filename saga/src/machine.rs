//! The orchestrated saga as an explicit state machine, apart from Kafka and SQL so it is tested
//! without either. Forward: create order → reserve stock → charge payment → commit stock → confirm
//! order. The pivot is the captured payment: before it a failure compensates in reverse (refund,
//! release stock, cancel order); after it the remaining steps are retried until they succeed.

use crate::message::{Command, Step, StepResult};
use common::domain::{Order, OutcomeKind, RejectReason};

/// Every state a saga can be in. Each non-terminal state waits for exactly one step's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SagaState {
    CreatingOrder,
    ReservingStock,
    ChargingPayment,
    CommittingStock,
    ConfirmingOrder,
    RefundingPayment,
    ReleasingStock,
    CancellingOrder,
    /// Terminal: every step applied.
    Confirmed,
    /// Terminal: nothing applied, or everything compensated.
    Cancelled,
}

impl SagaState {
    pub const ALL: [SagaState; 10] = [
        SagaState::CreatingOrder,
        SagaState::ReservingStock,
        SagaState::ChargingPayment,
        SagaState::CommittingStock,
        SagaState::ConfirmingOrder,
        SagaState::RefundingPayment,
        SagaState::ReleasingStock,
        SagaState::CancellingOrder,
        SagaState::Confirmed,
        SagaState::Cancelled,
    ];

    /// The text in `sagas.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::CreatingOrder => "CREATING_ORDER",
            SagaState::ReservingStock => "RESERVING_STOCK",
            SagaState::ChargingPayment => "CHARGING_PAYMENT",
            SagaState::CommittingStock => "COMMITTING_STOCK",
            SagaState::ConfirmingOrder => "CONFIRMING_ORDER",
            SagaState::RefundingPayment => "REFUNDING_PAYMENT",
            SagaState::ReleasingStock => "RELEASING_STOCK",
            SagaState::CancellingOrder => "CANCELLING_ORDER",
            SagaState::Confirmed => "CONFIRMED",
            SagaState::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<SagaState> {
        SagaState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Confirmed | SagaState::Cancelled)
    }

    /// The step whose reply this state waits for.
    pub fn awaited_step(self) -> Option<Step> {
        Some(match self {
            SagaState::CreatingOrder => Step::CreateOrder,
            SagaState::ReservingStock => Step::ReserveStock,
            SagaState::ChargingPayment => Step::ChargePayment,
            SagaState::CommittingStock => Step::CommitStock,
            SagaState::ConfirmingOrder => Step::ConfirmOrder,
            SagaState::RefundingPayment => Step::RefundPayment,
            SagaState::ReleasingStock => Step::ReleaseStock,
            SagaState::CancellingOrder => Step::CancelOrder,
            SagaState::Confirmed | SagaState::Cancelled => return None,
        })
    }

    /// Forward steps before the pivot give up after `max_attempts`; the rest never give up.
    fn may_give_up(self) -> bool {
        matches!(
            self,
            SagaState::CreatingOrder | SagaState::ReservingStock | SagaState::ChargingPayment
        )
    }
}

/// Why a cancelled saga was cancelled; stored as text in `sagas.reason` and `orders.reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Rejected(RejectReason),
    Aborted(String),
}

impl Ending {
    pub fn to_text(&self) -> String {
        match self {
            Ending::Rejected(r) => r.to_text(),
            Ending::Aborted(why) => format!("aborted:{why}"),
        }
    }

    /// The client-visible outcome of a cancelled saga with this stored reason.
    pub fn outcome_of(reason: Option<&str>) -> OutcomeKind {
        match reason {
            Some(r) if r.starts_with(common::domain::REJECTED_PREFIX) => OutcomeKind::Rejected,
            _ => OutcomeKind::Aborted,
        }
    }
}

/// One saga as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saga {
    pub order: Order,
    pub state: SagaState,
    /// Sends of the awaited step so far (1 after the first send).
    pub attempts: u32,
    /// Set once the saga turned to compensation.
    pub ending: Option<Ending>,
}

/// What the engine decided: the saga's next state, what to send, and whether this changed anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Move to `saga` and send `command` (absent for terminal states).
    Advance {
        saga: Saga,
        command: Option<Command>,
    },
    /// A reply for a step this state is not waiting for (a duplicate of an earlier attempt's
    /// answer, or one overtaken by a timeout): no change.
    Stale,
}

impl Saga {
    /// A new saga and its first command.
    pub fn start(order: Order) -> (Saga, Command) {
        let saga = Saga {
            order,
            state: SagaState::CreatingOrder,
            attempts: 1,
            ending: None,
        };
        let command = saga
            .command_for(SagaState::CreatingOrder)
            .expect("non-terminal");
        (saga, command)
    }

    /// The client-visible outcome, once terminal.
    pub fn outcome(&self) -> Option<OutcomeKind> {
        match self.state {
            SagaState::Confirmed => Some(OutcomeKind::Committed),
            SagaState::Cancelled => Some(match &self.ending {
                Some(Ending::Rejected(_)) => OutcomeKind::Rejected,
                _ => OutcomeKind::Aborted,
            }),
            _ => None,
        }
    }

    /// A service answered `step` with `result`.
    pub fn on_reply(&self, step: Step, result: StepResult) -> Transition {
        if self.state.awaited_step() != Some(step) {
            return Transition::Stale;
        }
        use SagaState::*;
        let retried = self.attempts > 1;
        match (self.state, result) {
            (CreatingOrder, StepResult::Done) => self.enter(ReservingStock, None),
            (ReservingStock, StepResult::Done) => self.enter(ChargingPayment, None),
            (ChargingPayment, StepResult::Done) => self.enter(CommittingStock, None),
            (CommittingStock, StepResult::Done) => self.enter(ConfirmingOrder, None),
            (ConfirmingOrder, StepResult::Done) => self.enter(Confirmed, None),
            (RefundingPayment, StepResult::Done) => self.enter(ReleasingStock, None),
            (ReleasingStock, StepResult::Done) => self.enter(CancellingOrder, None),
            (CancellingOrder, StepResult::Done) => self.enter(Cancelled, None),
            // A refusal after a re-send may hide an earlier attempt that did apply (its reply is
            // still on the way): compensate that step too. Compensations are no-ops when nothing
            // was applied, and per-order ordering makes them land after every earlier attempt.
            (CreatingOrder, StepResult::Rejected { reason }) => {
                self.enter(CancellingOrder, Some(Ending::Rejected(reason)))
            }
            (ReservingStock, StepResult::Rejected { reason }) => {
                let next = if retried {
                    ReleasingStock
                } else {
                    CancellingOrder
                };
                self.enter(next, Some(Ending::Rejected(reason)))
            }
            (ChargingPayment, StepResult::Rejected { reason }) => {
                let next = if retried {
                    RefundingPayment
                } else {
                    ReleasingStock
                };
                self.enter(next, Some(Ending::Rejected(reason)))
            }
            // After the pivot and in compensation nothing may refuse; a refusal would be a bug in
            // a service, so retry rather than leave the saga half done.
            (
                CommittingStock | ConfirmingOrder | RefundingPayment | ReleasingStock
                | CancellingOrder,
                StepResult::Rejected { reason },
            ) => {
                tracing::error!(order_id = %self.order.id, step = step.as_str(), ?reason, "a step that cannot fail was refused; retrying");
                self.retry()
            }
            (Confirmed | Cancelled, _) => Transition::Stale,
        }
    }

    /// The awaited step's deadline passed: re-send, or give up and compensate.
    pub fn on_timeout(&self, max_attempts: u32) -> Transition {
        use SagaState::*;
        if self.state.is_terminal() {
            return Transition::Stale;
        }
        if !self.state.may_give_up() || self.attempts < max_attempts {
            return self.retry();
        }
        let step = self.state.awaited_step().expect("non-terminal").as_str();
        let ending = Some(Ending::Aborted(format!("timeout:{step}")));
        // The unanswered step may have applied: its own compensation comes first.
        let next = match self.state {
            CreatingOrder => CancellingOrder,
            ReservingStock => ReleasingStock,
            ChargingPayment => RefundingPayment,
            _ => unreachable!("only forward steps give up"),
        };
        self.enter(next, ending)
    }

    fn retry(&self) -> Transition {
        let saga = Saga {
            attempts: self.attempts + 1,
            ..self.clone()
        };
        let command = saga.command_for(saga.state);
        Transition::Advance { saga, command }
    }

    fn enter(&self, state: SagaState, ending: Option<Ending>) -> Transition {
        let saga = Saga {
            state,
            attempts: 1,
            ending: ending.or_else(|| self.ending.clone()),
            order: self.order.clone(),
        };
        let command = saga.command_for(state);
        Transition::Advance { saga, command }
    }

    fn command_for(&self, state: SagaState) -> Option<Command> {
        let order = self.order.clone();
        Some(match state {
            SagaState::CreatingOrder => Command::CreateOrder { order },
            SagaState::ReservingStock => Command::ReserveStock { order },
            SagaState::ChargingPayment => Command::ChargePayment { order },
            SagaState::CommittingStock => Command::CommitStock,
            SagaState::ConfirmingOrder => Command::ConfirmOrder,
            SagaState::RefundingPayment => Command::RefundPayment,
            SagaState::ReleasingStock => Command::ReleaseStock,
            SagaState::CancellingOrder => Command::CancelOrder {
                reason: self
                    .ending
                    .as_ref()
                    .map(Ending::to_text)
                    .unwrap_or_else(|| "aborted:unknown".into()),
            },
            SagaState::Confirmed | SagaState::Cancelled => return None,
        })
    }
}

#[cfg(test)]
mod tests;
