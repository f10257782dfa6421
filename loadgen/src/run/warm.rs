//! Whether a freshly started broker's JVM is still compiling. Until its just-in-time compiler
//! has compiled the paths a saga's traffic takes, the broker spends about as much CPU compiling
//! as serving — seen: the compiler threads used 0.78 of the broker's 1.44 cores in the first 6 s
//! of an orchestrated run, under 0.05 after 25 s — which a long-running production broker never
//! does. Generic produce/consume traffic does not settle it: the sagas' own traffic set the
//! compiler going again after 20 s of it. So a saga's warm-up goes on, in slices of its own
//! load, until the compiler is quiet (`load.broker_warmup_s` caps it).

use crate::run::resources;
use std::time::Duration;

/// One slice of extra warm-up load.
pub const SLICE: Duration = Duration::from_secs(2);

/// Settled: the compiler threads used less than this share of one core over a slice.
const SETTLED_SHARE: f64 = 0.05;

/// CPU time the JVM compiler threads (`C1/C2 CompilerThre…`) of process `pid` have used.
pub fn compiler_cpu(pid: u32) -> Option<Duration> {
    let mut ticks = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.contains("CompilerThre") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // A thread has no reaped children: count its own times only.
        ticks += resources::parse_stat(&stat, true).map_or(0, |s| s.ticks);
    }
    Some(Duration::from_secs_f64(
        ticks as f64 * resources::tick_ms() / 1000.0,
    ))
}

/// Whether the compiler used less than its settled share between two readings `window` apart.
/// Unknown readings count as settled: nothing to wait for.
pub fn settled(before: Option<Duration>, after: Option<Duration>, window: Duration) -> bool {
    match (before, after) {
        (Some(a), Some(b)) => {
            b.saturating_sub(a).as_secs_f64() < SETTLED_SHARE * window.as_secs_f64()
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiler_busy_for_a_fifth_of_the_window_is_not_settled() {
        let ms = Duration::from_millis;
        assert!(!settled(Some(ms(1_000)), Some(ms(1_400)), SLICE));
        assert!(settled(Some(ms(1_000)), Some(ms(1_050)), SLICE));
        assert!(settled(None, Some(ms(5_000)), SLICE));
    }

    #[test]
    fn this_process_has_no_compiler_threads() {
        assert_eq!(compiler_cpu(std::process::id()), Some(Duration::ZERO));
    }
}
