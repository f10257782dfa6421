//! The one retry policy of the lab: capped exponential backoff with full jitter, so that many
//! retrying clients (participants asking for a decision, a coordinator re-sending Commit) do not
//! retry in lockstep.

use rand::Rng;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// No delay exceeds this.
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay: uniform in [0, min(max, initial · 2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let micros = cap.as_micros() as u64;
        Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_are_jittered() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(10));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(80)));
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jittered");
        assert_eq!(backoff.attempts(), 20);
    }
}
