//! Fail points for fault tests: named places in protocol code where a test makes the process
//! crash (a real SIGKILL of itself) or stall. They exist only when the `failpoints` feature is on
//! (tests turn it on); otherwise [`hit`] is an empty function. A test arms them through the
//! environment of the process it starts: `TXLAB_FAILPOINTS="after-decision-logged=crash"`, several
//! separated by `;`, actions `crash`, `sleep(<ms>)`, `crash-after(<n>)` (crash on the n-th hit),
//! or `fire-after(<n>)` ([`fires`] answers true on the n-th hit only: the caller breaks something
//! that a crash or a sleep cannot, e.g. a Kafka consumer that stops fetching).

/// The environment variable that arms fail points.
pub const ENV_VAR: &str = "TXLAB_FAILPOINTS";

#[cfg(feature = "failpoints")]
mod armed {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    #[derive(Debug)]
    pub enum Action {
        Crash,
        CrashAfter(u64, AtomicU64),
        Sleep(Duration),
        FireAfter(u64, AtomicU64),
    }

    pub fn parse(spec: &str) -> Result<HashMap<String, Action>, String> {
        let mut points = HashMap::new();
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, action) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=action"))?;
            let number = |text: &str, prefix: &str| -> Result<u64, String> {
                text.strip_prefix(prefix)
                    .and_then(|t| t.strip_suffix(')'))
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| format!("{action:?} is not {prefix}<number>)"))
            };
            let action = match action {
                "crash" => Action::Crash,
                a if a.starts_with("sleep(") => {
                    Action::Sleep(Duration::from_millis(number(a, "sleep(")?))
                }
                a if a.starts_with("crash-after(") => {
                    Action::CrashAfter(number(a, "crash-after(")?, AtomicU64::new(0))
                }
                a if a.starts_with("fire-after(") => {
                    Action::FireAfter(number(a, "fire-after(")?, AtomicU64::new(0))
                }
                other => {
                    return Err(format!(
                        "unknown action {other:?} (crash, sleep(ms), crash-after(n), fire-after(n))"
                    ))
                }
            };
            points.insert(name.to_string(), action);
        }
        Ok(points)
    }

    fn points() -> &'static HashMap<String, Action> {
        static POINTS: OnceLock<HashMap<String, Action>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let spec = std::env::var(super::ENV_VAR).unwrap_or_default();
            parse(&spec).unwrap_or_else(|err| {
                eprintln!("{}: {err}", super::ENV_VAR);
                std::process::exit(2)
            })
        })
    }

    pub fn hit(name: &str) -> Option<Duration> {
        let crash = || -> ! {
            tracing::warn!(failpoint = name, "fail point: crashing (SIGKILL)");
            // SAFETY: kill(2) on our own pid: the same crash a fault injector causes.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL cannot be caught")
        };
        match points().get(name)? {
            Action::Crash => crash(),
            Action::CrashAfter(n, seen) => {
                if seen.fetch_add(1, Ordering::SeqCst) + 1 >= *n {
                    crash()
                }
                None
            }
            Action::Sleep(d) => Some(*d),
            Action::FireAfter(..) => None,
        }
    }

    pub fn fires(name: &str) -> bool {
        match points().get(name) {
            Some(Action::FireAfter(n, seen)) => seen.fetch_add(1, Ordering::SeqCst) + 1 == *n,
            _ => false,
        }
    }
}

/// Passes the fail point `name`: crashes the process if a test armed it so, or returns how long
/// the caller must stall (the caller sleeps, so async code stays async).
#[inline]
pub fn hit(name: &str) -> Option<std::time::Duration> {
    #[cfg(feature = "failpoints")]
    {
        armed::hit(name)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// Whether the fail point `name`, armed `fire-after(<n>)`, is being hit for the n-th time: true
/// once, then never again, so the caller's breakage happens once per process.
#[inline]
pub fn fires(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        armed::fires(name)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// Passes a fail point in async code: crash, or sleep as armed.
pub async fn pass(name: &str) {
    if let Some(stall) = hit(name) {
        tokio::time::sleep(stall).await;
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    #[test]
    fn parses_specs_and_rejects_nonsense() {
        let points =
            super::armed::parse("a=crash; b=sleep(250);c=crash-after(3);d=fire-after(2)").unwrap();
        assert_eq!(points.len(), 4);
        assert!(super::armed::parse("a=explode")
            .unwrap_err()
            .contains("unknown action"));
        assert!(super::armed::parse("a=sleep(x)").is_err());
    }
}
