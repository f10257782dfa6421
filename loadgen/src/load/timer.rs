//! Waking at an instant to within tens of microseconds without spinning a core.
//!
//! Tokio's timers tick in whole milliseconds, so an open loop that sleeps on them starts every
//! order about 1 ms late — as much as the whole 2PC floor. Here the wait is a Linux `timerfd`
//! (a kernel high-resolution timer, which timer slack does not delay) registered with tokio's
//! reactor: the generator's task stays one task on the runtime, and the worker parked in
//! `epoll_wait` wakes when the timer fires. Elsewhere it falls back to tokio's timer.

use std::time::Instant;

/// One re-armable one-shot timer. Must be created inside a tokio runtime.
pub struct PreciseTimer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
}

impl Default for PreciseTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl PreciseTimer {
    /// A timerfd-backed timer, or (logged) tokio's timer if the kernel refuses one.
    pub fn new() -> PreciseTimer {
        #[cfg(target_os = "linux")]
        {
            let fd = linux::timerfd().map_err(|e| {
                tracing::warn!(error = %e, "no timerfd: the schedule falls back to 1 ms timers");
            });
            PreciseTimer { fd: fd.ok() }
        }
        #[cfg(not(target_os = "linux"))]
        PreciseTimer {}
    }

    /// Returns at `deadline` (at once if it has passed). Cancel-safe: a later call re-arms the
    /// timer, and a stale expiry of a cancelled wait is read and ignored.
    pub async fn sleep_until(&self, deadline: Instant) {
        if deadline <= Instant::now() {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            match linux::wait(fd, deadline).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "timerfd wait failed; using a 1 ms timer"),
            }
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Instant;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    pub fn timerfd() -> io::Result<AsyncFd<OwnedFd>> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd that we
        // own from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd keeps the timerfd open, unchanged, for as long as the AsyncFd
        // that owns it lives.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }

    /// Arms the timer for `deadline` and waits until it fires. Re-arming resets the expiry
    /// count, so an earlier, cancelled wait cannot end this one early.
    pub async fn wait(fd: &AsyncFd<OwnedFd>, deadline: Instant) -> io::Result<()> {
        // std's Instant is CLOCK_MONOTONIC on Linux, so a relative arming is exact up to the
        // nanoseconds between two clock reads; a zero value would disarm, hence the 1 ns.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(std::time::Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut ready = fd.readable().await?;
            let read = ready.try_io(|fd| {
                let mut expirations = 0u64;
                // SAFETY: reads 8 bytes into a local u64, as a timerfd requires.
                let n = unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        (&mut expirations as *mut u64).cast(),
                        std::mem::size_of::<u64>(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            if let Ok(result) = read {
                return result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_no_earlier_than_asked_and_can_be_rearmed_after_a_cancelled_wait() {
        let timer = PreciseTimer::new();
        // A wait cancelled before it fires leaves the timer usable.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(1),
            timer.sleep_until(Instant::now() + Duration::from_secs(5)),
        )
        .await;
        assert!(cancelled.is_err());
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_micros(700);
            timer.sleep_until(deadline).await;
            assert!(Instant::now() >= deadline);
        }
        // A deadline in the past returns at once.
        timer
            .sleep_until(Instant::now() - Duration::from_millis(1))
            .await;
    }
}
