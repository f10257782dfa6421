//! What a saga process needs to know: its role, where the broker and its database are, topic
//! names and timing policy. Binaries fill these from flags; tests build them directly.

use common::kafka_clients::ClientTuning;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the services are driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An orchestrator sends commands and reacts to replies.
    Orchestrated,
    /// Each service reacts to the previous step's events.
    Choreographed,
}

pub use common::domain::ServiceKind;

/// Topic names, all under one prefix so that runs (and tests) never see each other's messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    pub prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Topics {
        Topics {
            prefix: prefix.into(),
        }
    }

    /// Commands for one service (orchestrated mode).
    pub fn commands(&self, service: ServiceKind) -> String {
        format!("{}.commands.{}", self.prefix, service.as_str())
    }

    /// Replies to the orchestrator.
    pub fn replies(&self) -> String {
        format!("{}.replies", self.prefix)
    }

    /// Domain events (choreographed mode): one topic, so one order's events stay in one partition
    /// and in order for every reader.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Every topic either mode uses.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.commands(ServiceKind::Order),
            self.commands(ServiceKind::Payment),
            self.commands(ServiceKind::Inventory),
            self.replies(),
            self.events(),
        ]
    }
}

/// How a process talks to the broker.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub bootstrap: String,
    pub topics: Topics,
    /// Partitions of each topic when the process creates them (they may exist already).
    pub partitions: i32,
    /// Latency-relevant client settings, recorded with every result.
    pub tuning: ClientTuning,
    /// Consumer group suffix; a new suffix replays every topic from offset 0 (exactly-once tests).
    pub group_suffix: String,
    /// Test knob: the relay publishes every outbox row twice, to prove consumers absorb duplicates.
    pub publish_twice: bool,
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>, topics: Topics) -> KafkaSettings {
        KafkaSettings {
            bootstrap: bootstrap.into(),
            topics,
            partitions: 8,
            tuning: ClientTuning::default(),
            group_suffix: String::new(),
            publish_twice: false,
        }
    }

    pub fn group(&self, role: &str) -> String {
        format!("{}.{}{}", self.topics.prefix, role, self.group_suffix)
    }
}

/// The timing policy for steps that get no reply: the orchestrator's per step, and the one
/// choreography's order service applies to the whole saga (it cannot see which step is late).
#[derive(Clone, Debug)]
pub struct StepPolicy {
    /// How long a step may go unanswered before it is sent again.
    pub step_timeout: Duration,
    /// Sends of a forward step before the saga gives up and compensates. Compensations and the
    /// steps after the pivot (payment captured) are retried without limit: they must finish.
    pub max_attempts: u32,
}

impl Default for StepPolicy {
    fn default() -> Self {
        StepPolicy {
            step_timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

impl StepPolicy {
    /// The wait before attempt `attempt` (1-based) times out: grows linearly up to 4× so a slow
    /// broker is not flooded with resends.
    pub fn timeout_for(&self, attempt: u32) -> Duration {
        self.step_timeout * attempt.clamp(1, 4)
    }

    /// How long a choreographed saga may stay unfinished before the order service asks for it to
    /// be cancelled: what the orchestrator waits on one unanswered step before it gives up.
    pub fn saga_deadline(&self) -> Duration {
        (1..=self.max_attempts.max(1))
            .map(|a| self.timeout_for(a))
            .sum()
    }

    /// How long after a cancel request (choreography) it is made again while the order is open.
    pub fn cancel_retry(&self) -> Duration {
        self.timeout_for(self.max_attempts + 1)
    }
}

/// The front's admission limit (`common::admission`), the same rule as 2PC's coordinator: sagas
/// started here and not yet final, and what an admitted saga needs before the client's deadline
/// (2PC reserves its prepare timeout). Past the limit an order waits only while the reserve still
/// fits, then is answered ABORTED "overloaded" with nothing written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionPolicy {
    pub max_in_flight: usize,
    pub reserve: Duration,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        AdmissionPolicy {
            max_in_flight: 64,
            reserve: Duration::from_millis(500),
        }
    }
}

/// How long `PlaceOrder` waits when the client gives no deadline.
pub const DEFAULT_CLIENT_DEADLINE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_prefixed_and_timeouts_grow_to_a_cap() {
        let topics = Topics::new("run1");
        assert_eq!(
            topics.commands(ServiceKind::Payment),
            "run1.commands.payment"
        );
        assert_eq!(topics.all().len(), 5);
        let policy = StepPolicy {
            step_timeout: Duration::from_millis(100),
            max_attempts: 3,
        };
        let waits: Vec<u128> = (1..=6).map(|a| policy.timeout_for(a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 300, 400, 400, 400]);
        assert_eq!(policy.saga_deadline(), Duration::from_millis(600));
        assert_eq!(policy.cancel_retry(), Duration::from_millis(400));
        let mut kafka = KafkaSettings::new("b:9092", topics);
        kafka.group_suffix = ".replay".into();
        assert_eq!(kafka.group("payment"), "run1.payment.replay");
    }
}
