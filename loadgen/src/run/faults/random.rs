//! `[random_faults]`: a fault schedule drawn from the scenario's seed — kinds, roles, start
//! times, durations — so that `soak` can run many different schedules, each reproducible from
//! its seed. Faults come one after another with a recovery gap between them, so every drawn
//! schedule passes the same validation as a hand-written one.

use super::schedule::{FaultKind, FaultSpec, Role};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The `[random_faults]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// How many faults to draw.
    pub count: u64,
    /// Each fault lasts between these many seconds (inclusive).
    pub duration_s: (u64, u64),
    /// The kinds to draw from; empty: every kind.
    #[serde(default)]
    pub kinds: Vec<FaultKind>,
    /// The first fault starts at or after this second.
    #[serde(default = "default_first_at")]
    pub first_at_s: u64,
    /// Seconds left fault-free after each fault, to see the recovery.
    #[serde(default = "default_gap")]
    pub gap_s: u64,
}

fn default_first_at() -> u64 {
    2
}

fn default_gap() -> u64 {
    4
}

const ALL_KINDS: [FaultKind; 7] = [
    FaultKind::Partition,
    FaultKind::Delay,
    FaultKind::Reset,
    FaultKind::Crash,
    FaultKind::Pause,
    FaultKind::Isolate,
    FaultKind::Surge,
];

/// The roles a kind can act on (the validation's rules, as lists to draw from).
fn roles_for(kind: FaultKind) -> &'static [Role] {
    use Role::*;
    match kind {
        FaultKind::Partition | FaultKind::Delay | FaultKind::Reset => {
            &[Client, Coordinator, Order, Payment, Inventory, Broker]
        }
        FaultKind::Crash | FaultKind::Pause => &[Coordinator, Order, Payment, Inventory, Broker],
        FaultKind::Isolate => &[Coordinator, Order, Payment, Inventory],
        FaultKind::Surge => &[Client],
    }
}

/// Draws the schedule for `seed` within a measured load of `load_duration_s`;
/// `Err((field, reason))` when the section cannot fit or is malformed.
pub fn draw(
    spec: &RandomFaults,
    seed: u64,
    load_duration_s: u64,
) -> Result<Vec<FaultSpec>, (String, String)> {
    let field = |name: &str| format!("random_faults.{name}");
    let (shortest, longest) = spec.duration_s;
    if shortest == 0 || shortest > longest {
        return Err((
            field("duration_s"),
            format!("must be [min, max] with 1 <= min <= max, got [{shortest}, {longest}]"),
        ));
    }
    if spec.count == 0 {
        return Err((field("count"), "must be at least 1".into()));
    }
    // Each fault may start up to 1 s late in its slot.
    let needed = spec.first_at_s + spec.count * (longest + 1 + spec.gap_s);
    if needed > load_duration_s {
        return Err((
            field("count"),
            format!(
                "{} faults of up to {longest} s, each followed by gap_s = {} s, need {needed} s \
                 from first_at_s = {}; load.duration_s is {load_duration_s}",
                spec.count, spec.gap_s, spec.first_at_s
            ),
        ));
    }
    let kinds: &[FaultKind] = if spec.kinds.is_empty() {
        &ALL_KINDS
    } else {
        &spec.kinds
    };
    // Its own stream, so that the arrivals drawn from the same seed stay as they were.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xFA17_5EED);
    let mut faults = Vec::new();
    let mut next_free = spec.first_at_s;
    for _ in 0..spec.count {
        let kind = *kinds.choose(&mut rng).expect("kinds is not empty");
        let target = *roles_for(kind)
            .choose(&mut rng)
            .expect("every kind has roles");
        let at_s = next_free + rng.gen_range(0..=1);
        let duration_s = rng.gen_range(shortest..=longest);
        let (latency_ms, jitter_ms) = match kind {
            FaultKind::Delay => (Some(rng.gen_range(5..=50)), Some(rng.gen_range(0..=10))),
            _ => (None, None),
        };
        let factor = (kind == FaultKind::Surge).then(|| f64::from(rng.gen_range(2..=4u32)));
        faults.push(FaultSpec {
            kind,
            target,
            at_s,
            duration_s,
            latency_ms,
            jitter_ms,
            factor,
        });
        next_free = at_s + duration_s + spec.gap_s;
    }
    Ok(faults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::faults::schedule::validate;

    fn spec(count: u64) -> RandomFaults {
        RandomFaults {
            count,
            duration_s: (1, 4),
            kinds: Vec::new(),
            first_at_s: 2,
            gap_s: 4,
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_valid_schedule_and_another_seed_another() {
        let a = draw(&spec(4), 7, 40).unwrap();
        assert_eq!(a, draw(&spec(4), 7, 40).unwrap());
        assert_ne!(a, draw(&spec(4), 8, 40).unwrap());
        for seed in 0..200 {
            let faults = draw(&spec(4), seed, 40).unwrap();
            assert_eq!(faults.len(), 4);
            validate(&faults, 40).unwrap_or_else(|e| panic!("seed {seed}: {e:?} in {faults:?}"));
        }
    }

    #[test]
    fn a_schedule_that_cannot_fit_is_refused_naming_the_field() {
        let (field, reason) = draw(&spec(10), 1, 40).unwrap_err();
        assert_eq!(field, "random_faults.count");
        assert!(reason.contains("need 92 s"), "{reason}");
        let mut bad = spec(1);
        bad.duration_s = (3, 2);
        assert_eq!(draw(&bad, 1, 40).unwrap_err().0, "random_faults.duration_s");
    }

    #[test]
    fn only_the_listed_kinds_are_drawn() {
        let mut only = spec(4);
        only.kinds = vec![FaultKind::Pause, FaultKind::Crash];
        for seed in 0..50 {
            for fault in draw(&only, seed, 40).unwrap() {
                assert!(matches!(fault.kind, FaultKind::Pause | FaultKind::Crash));
                assert_ne!(fault.target, Role::Client);
            }
        }
    }
}
