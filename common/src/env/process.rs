//! Child processes the lab owns. Each writes its output to a log file in the run directory, dies
//! with the lab even if the lab is SIGKILLed (`PR_SET_PDEATHSIG`), and is stopped when dropped, so
//! that no test or run leaves a process behind.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a child is asked to stop before it is killed.
#[derive(Clone, Copy, Debug)]
pub struct StopPolicy {
    /// The polite signal (PostgreSQL: SIGINT is its fast shutdown; Kafka: SIGTERM).
    pub signal: i32,
    /// How long to wait for it before SIGKILL.
    pub grace: Duration,
}

/// A running child process, stopped on drop.
#[derive(Debug)]
pub struct ManagedChild {
    name: String,
    child: Child,
    log: PathBuf,
    stop: StopPolicy,
    exited: Option<ExitStatus>,
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The parent-death signal fires when the *thread* that forked the child ends, not the process.
/// Test harnesses and runtimes end threads freely, so every child is forked from one thread that
/// lives as long as the process.
fn spawn_from_lab_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("txlab-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// Makes the child its own process group (so a terminal's Ctrl-C reaches only the lab, which then
/// stops its children in order) and has the kernel SIGKILL it if the lab dies.
fn own_and_tie_to_lab(command: &mut Command) {
    command.process_group(0);
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                return Err(io::Error::other("the lab exited while starting a child"));
            }
            Ok(())
        });
    }
}

impl ManagedChild {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        stop: StopPolicy,
    ) -> io::Result<ManagedChild> {
        let out = File::options().create(true).append(true).open(log)?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        own_and_tie_to_lab(&mut command);
        let child = spawn_from_lab_thread(command)?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started child");
        Ok(ManagedChild {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            stop,
            exited: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the child has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Polls `ready` every `every` until it says yes. Fails, with the end of the child's log,
    /// if the child exits first (its status prefixed by `exited_as`, e.g. the service's name)
    /// or `timeout` passes; `what` names the child in the error.
    pub async fn wait_ready<F, Fut>(
        &mut self,
        what: &'static str,
        exited_as: Option<&str>,
        timeout: Duration,
        every: Duration,
        mut ready: F,
    ) -> Result<(), super::EnvError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Err(super::EnvError::Exited {
                    what,
                    status: exited_as
                        .map_or(status.to_string(), |name| format!("{name}: {status}")),
                    log: self.log.clone(),
                    tail: self.log_tail(20),
                });
            }
            if ready().await {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(super::EnvError::NotReady {
                    what,
                    after: timeout,
                    log: self.log.clone(),
                    tail: self.log_tail(20),
                });
            }
            tokio::time::sleep(every).await;
        }
    }

    /// A crash, for fault injection: SIGKILL to the whole process group, then reap.
    pub fn kill(&mut self) {
        if self.is_running() {
            signal_group(self.child.id(), libc::SIGKILL);
            self.exited = self.child.wait().ok();
        }
    }

    /// A stall, for fault injection: SIGSTOP to the whole process group. Its sockets stay open
    /// and unread, as in a long GC pause or a frozen VM; [`ManagedChild::resume`] ends it.
    pub fn pause(&mut self) {
        if self.is_running() {
            signal_group(self.child.id(), libc::SIGSTOP);
        }
    }

    /// Ends a [`ManagedChild::pause`] (SIGCONT); harmless on a process that is not stopped.
    pub fn resume(&mut self) {
        if self.is_running() {
            signal_group(self.child.id(), libc::SIGCONT);
        }
    }

    /// Asks politely, waits up to the grace period, then kills. Calling it twice is harmless.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        signal(self.child.id(), self.stop.signal);
        // A paused child would hold the stop signal pending until the grace period ran out.
        signal_group(self.child.id(), libc::SIGCONT);
        let deadline = Instant::now() + self.stop.grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                // The leader is gone; reap any process it left in its group.
                signal_group(self.child.id(), libc::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(name = %self.name, grace = ?self.stop.grace, "child ignored its stop signal; killing it");
        self.kill();
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file ("" if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned and still hold (not yet reaped).
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: kill(2) on the process group the child leads (process_group(0) at spawn).
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

/// Runs a short-lived command to completion with its output appended to `log`.
pub fn run_to_completion(mut command: Command, log: &Path) -> io::Result<ExitStatus> {
    let out = File::options().create(true).append(true).open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    own_and_tie_to_lab(&mut command);
    spawn_from_lab_thread(command)?.wait()
}

/// Whether a process with this pid exists and has not exited (a zombie, exited but not yet
/// reaped by its parent, counts as dead).
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X"))
}

/// Stops a server that an earlier lab left running on the same directory, so that a directory
/// never has two owners. `pid` comes from a pid file; the process is only touched if its command
/// line names `marker` (the directory), so a recycled pid is left alone.
pub fn stop_leftover(pid: i32, marker: &str, signal: i32) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !pid_alive(pid) || !cmdline.contains(marker) {
        return;
    }
    tracing::warn!(pid, marker, "stopping a server an earlier lab left running");
    // SAFETY: kill(2) on a pid checked above to be the leftover server.
    unsafe { libc::kill(pid, signal) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if pid_alive(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        while pid_alive(pid) && Instant::now() < deadline + Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
