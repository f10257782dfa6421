//! Flags both binaries share, turned into library configuration.

use crate::config::{AdmissionPolicy, KafkaSettings, StepPolicy, Topics};
use common::kafka_clients::ClientTuning;
use std::time::Duration;

/// Step timeouts: the orchestrator's per step; choreography's order service derives its saga
/// deadline from the same two numbers, so both modes give up after the same wait.
#[derive(Clone, Debug, clap::Args)]
pub struct StepArgs {
    /// How long a step may go unanswered before it is re-sent (ms).
    #[arg(long, default_value_t = 5000)]
    pub step_timeout_ms: u64,
    /// Sends of a forward step before the saga compensates.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
}

impl StepArgs {
    pub fn policy(&self) -> StepPolicy {
        StepPolicy {
            step_timeout: Duration::from_millis(self.step_timeout_ms),
            max_attempts: self.max_attempts,
        }
    }
}

/// The front's admission limit (the orchestrator's, or choreography's order service's).
#[derive(Clone, Debug, clap::Args)]
pub struct AdmissionArgs {
    /// Sagas started at this front and not yet final; more wait, then are shed.
    #[arg(long, default_value_t = AdmissionPolicy::default().max_in_flight)]
    pub max_in_flight: usize,
    /// A waiting order is shed once less than this is left before its deadline (ms).
    #[arg(long, default_value_t = AdmissionPolicy::default().reserve.as_millis() as u64)]
    pub admission_reserve_ms: u64,
}

impl AdmissionArgs {
    pub fn policy(&self) -> AdmissionPolicy {
        AdmissionPolicy {
            max_in_flight: self.max_in_flight,
            reserve: Duration::from_millis(self.admission_reserve_ms),
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port).
    #[arg(long)]
    pub bootstrap: String,
    /// Prefix of every saga topic; runs with different prefixes never see each other.
    #[arg(long, default_value = "saga")]
    pub topic_prefix: String,
    /// Partitions of each topic when this process creates it.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Consumer fetch.wait.max.ms.
    #[arg(long, default_value_t = ClientTuning::default().fetch_wait_max_ms)]
    pub fetch_wait_max_ms: u32,
    /// Consumer fetch.min.bytes.
    #[arg(long, default_value_t = ClientTuning::default().fetch_min_bytes)]
    pub fetch_min_bytes: u32,
    /// Producer linger.ms.
    #[arg(long, default_value_t = ClientTuning::default().linger_ms)]
    pub linger_ms: u32,
    /// Producers' and consumers' reconnect.backoff.max.ms.
    #[arg(long, default_value_t = ClientTuning::default().reconnect_backoff_max_ms)]
    pub reconnect_backoff_max_ms: u32,
    /// Consumer group suffix; a new one replays every topic from offset 0.
    #[arg(long, default_value = "")]
    pub group_suffix: String,
    /// Test knob: the relay publishes every outbox row twice.
    #[arg(long)]
    pub publish_twice: bool,
}

impl KafkaArgs {
    pub fn settings(&self) -> KafkaSettings {
        KafkaSettings {
            bootstrap: self.bootstrap.clone(),
            topics: Topics::new(&self.topic_prefix),
            partitions: self.partitions,
            tuning: ClientTuning {
                fetch_wait_max_ms: self.fetch_wait_max_ms,
                fetch_min_bytes: self.fetch_min_bytes,
                linger_ms: self.linger_ms,
                reconnect_backoff_max_ms: self.reconnect_backoff_max_ms,
            },
            group_suffix: self.group_suffix.clone(),
            publish_twice: self.publish_twice,
        }
    }
}
