//! The resource timeline: once a second, the CPU time and resident memory of every process of
//! the run, read from /proc, and PostgreSQL's WAL and checkpoint counters. It gives the cost a
//! reader can carry to another machine (CPU milliseconds per committed order, per process) and
//! shows what a stall coincided with (a checkpoint, a burst of WAL, a process at 100 %).
//!
//! Processes are told apart by what they run, not by pid, so a process restarted by a crash
//! fault stays in its line: `loadgen` (this process, fault proxies included), `postgres` (the
//! postmaster and every backend), `kafka` (the broker's JVM), and the protocol's processes
//! this process started (`coordinator`, `participant/<service>`, `orchestrator`,
//! `saga/<service>`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::watch;

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSecond {
    pub second: u64,
    /// CPU time used during this second (user + system, children reaped included), ms.
    pub cpu_ms: BTreeMap<String, u64>,
    /// Resident memory at the end of the second, MiB.
    pub rss_mib: BTreeMap<String, u64>,
    /// WAL written during this second (`pg_stat_wal`), bytes.
    pub wal_bytes: Option<u64>,
    /// Checkpoints completed during this second (`pg_stat_bgwriter`, timed + requested).
    pub checkpoints: Option<u64>,
    /// Time checkpoints spent writing and syncing during this second, ms.
    pub checkpoint_ms: Option<u64>,
}

/// Samples until [`Sampler::finish`].
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<ResourceSecond>>,
}

impl Sampler {
    /// Starts sampling now. `postmasters` are the lab's PostgreSQL clusters (their backends
    /// are their children); `database_url` one of its databases, for the WAL and checkpoint
    /// counters (on the replicated topology, of that database's cluster alone).
    pub fn start(postmasters: Vec<u32>, database_url: Option<String>) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut db = match database_url {
                Some(url) => {
                    use sqlx::Connection;
                    sqlx::PgConnection::connect(&url).await.ok()
                }
                None => None,
            };
            let mut procs = ProcessTable::new(postmasters);
            let mut last_pg = match db.as_mut() {
                Some(conn) => pg_counters(conn).await,
                None => None,
            };
            procs.sample();
            let mut seconds = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (cpu_ms, rss_mib) = procs.sample();
                let pg = match db.as_mut() {
                    Some(conn) => pg_counters(conn).await,
                    None => None,
                };
                let delta = |f: fn(&PgCounters) -> u64| match (&pg, &last_pg) {
                    (Some(now), Some(before)) => Some(f(now).saturating_sub(f(before))),
                    _ => None,
                };
                seconds.push(ResourceSecond {
                    second: seconds.len() as u64,
                    cpu_ms,
                    rss_mib,
                    wal_bytes: delta(|c| c.wal_bytes),
                    checkpoints: delta(|c| c.checkpoints),
                    checkpoint_ms: delta(|c| c.checkpoint_ms),
                });
                if pg.is_some() {
                    last_pg = pg;
                }
            }
            seconds
        });
        Sampler { stop, task }
    }

    /// Stops and returns one entry per whole second sampled.
    pub async fn finish(self) -> Vec<ResourceSecond> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// CPU milliseconds per committed order, per process, over `seconds` (the measured window).
pub fn cpu_per_commit(seconds: &[ResourceSecond], committed: u64) -> BTreeMap<String, f64> {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for s in seconds {
        for (name, ms) in &s.cpu_ms {
            *total.entry(name.clone()).or_default() += ms;
        }
    }
    total
        .into_iter()
        .map(|(name, ms)| (name, ms as f64 / committed.max(1) as f64))
        .collect()
}

struct PgCounters {
    wal_bytes: u64,
    checkpoints: u64,
    checkpoint_ms: u64,
}

async fn pg_counters(conn: &mut sqlx::PgConnection) -> Option<PgCounters> {
    // pg_stat_bgwriter holds the checkpoint counters up to PostgreSQL 16.
    let row: (i64, i64, f64) = sqlx::query_as(
        "SELECT w.wal_bytes::bigint, (b.checkpoints_timed + b.checkpoints_req)::bigint, \
         (b.checkpoint_write_time + b.checkpoint_sync_time)::float8 \
         FROM pg_stat_wal w, pg_stat_bgwriter b",
    )
    .fetch_one(conn)
    .await
    .ok()?;
    Some(PgCounters {
        wal_bytes: row.0.max(0) as u64,
        checkpoints: row.1.max(0) as u64,
        checkpoint_ms: row.2.max(0.0) as u64,
    })
}

/// What /proc says of one process.
pub(crate) struct Stat {
    ppid: u32,
    /// utime + stime (+ cutime + cstime but for this process), clock ticks.
    pub(crate) ticks: u64,
    rss_pages: u64,
    start_time: u64,
}

/// Every process on the machine, classified, with the CPU each had at the last sample.
struct ProcessTable {
    me: u32,
    /// Every PostgreSQL cluster's postmaster (one per owner on the replicated topology).
    postmasters: Vec<u32>,
    tick_ms: f64,
    page_bytes: u64,
    /// (pid, start time) → (class, ticks at the last sample).
    seen: HashMap<(u32, u64), (Option<String>, u64)>,
}

impl ProcessTable {
    fn new(postmasters: Vec<u32>) -> ProcessTable {
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        ProcessTable {
            me: std::process::id(),
            postmasters,
            tick_ms: tick_ms(),
            page_bytes: page.max(1) as u64,
            seen: HashMap::new(),
        }
    }

    /// CPU ms per class since the last call, and resident MiB per class now.
    fn sample(&mut self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let stats = read_all(self.me);
        let mut cpu_ticks: BTreeMap<String, u64> = BTreeMap::new();
        let mut rss: BTreeMap<String, u64> = BTreeMap::new();
        let mut seen = HashMap::new();
        for (&pid, stat) in &stats {
            let key = (pid, stat.start_time);
            // Ours but not yet named: it may not have exec'd yet, so look again next time.
            let class = match self.seen.get(&key) {
                Some((Some(class), _)) => Some(class.clone()),
                Some((None, _)) if !self.is_ours(pid, &stats) => None,
                _ => self.classify(pid, &stats),
            };
            let before = self.seen.get(&key).map_or(0, |(_, t)| *t);
            if let Some(name) = &class {
                *cpu_ticks.entry(name.clone()).or_default() += stat.ticks.saturating_sub(before);
                *rss.entry(name.clone()).or_default() += stat.rss_pages * self.page_bytes;
            }
            seen.insert(key, (class, stat.ticks));
        }
        self.seen = seen;
        let cpu_ms = cpu_ticks
            .into_iter()
            .map(|(k, t)| (k, (t as f64 * self.tick_ms).round() as u64))
            .collect();
        let rss_mib = rss.into_iter().map(|(k, b)| (k, b >> 20)).collect();
        (cpu_ms, rss_mib)
    }

    fn is_ours(&self, pid: u32, stats: &HashMap<u32, Stat>) -> bool {
        descends_from(pid, self.me, stats)
    }

    /// The line a process belongs to, or None for the rest of the machine.
    fn classify(&self, pid: u32, stats: &HashMap<u32, Stat>) -> Option<String> {
        if pid == self.me {
            return Some("loadgen".into());
        }
        let descends_from = |root: u32| descends_from(pid, root, stats);
        if self.postmasters.iter().any(|p| descends_from(*p)) {
            return Some("postgres".into());
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "kafka.Kafka") {
            return Some("kafka".into());
        }
        if !descends_from(self.me) {
            return None;
        }
        let program = args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())?;
        let service = args
            .iter()
            .position(|a| a == "--service")
            .and_then(|i| args.get(i + 1));
        Some(match (program.as_str(), service) {
            ("coordinator", _) => "coordinator".into(),
            ("participant", Some(s)) => format!("participant/{s}"),
            ("saga-orchestrator", _) => "orchestrator".into(),
            ("saga-service", Some(s)) => format!("saga/{s}"),
            _ => return None,
        })
    }
}

/// Whether `root` is `pid` or one of its ancestors.
fn descends_from(pid: u32, root: u32, stats: &HashMap<u32, Stat>) -> bool {
    let mut at = pid;
    for _ in 0..64 {
        if at == root {
            return true;
        }
        match stats.get(&at) {
            Some(s) if s.ppid != 0 && s.ppid != at => at = s.ppid,
            _ => return false,
        }
    }
    false
}

/// /proc/<pid>/stat of every process.
fn read_all(me: u32) -> HashMap<u32, Stat> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(&text, pid == me) {
            out.insert(pid, stat);
        }
    }
    out
}

/// Milliseconds of CPU one clock tick of /proc's `stat` counts.
pub(crate) fn tick_ms() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1000.0 / ticks.max(1) as f64
}

/// Fields after the command name (which may hold spaces, so split after its closing paren):
/// 1 ppid, 11 utime, 12 stime, 13 cutime, 14 cstime, 19 starttime, 21 rss. This process's own
/// children are counted in their own lines, so its reaped-children times are left out.
pub(crate) fn parse_stat(text: &str, own: bool) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let children = if own { 0 } else { num(13)? + num(14)? };
    Some(Stat {
        ppid: num(1)? as u32,
        ticks: num(11)? + num(12)? + children,
        rss_pages: num(21)?,
        start_time: num(19)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_around_a_name_with_spaces() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 98765 1000000 512 18446744073709551615";
        let stat = parse_stat(line, false).unwrap();
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.ticks, 250 + 50 + 7 + 3);
        assert_eq!(stat.start_time, 98765);
        assert_eq!(stat.rss_pages, 512);
        assert_eq!(parse_stat(line, true).unwrap().ticks, 300);
    }

    #[test]
    fn this_process_is_sampled_and_costs_are_per_commit() {
        let mut table = ProcessTable::new(Vec::new());
        table.sample();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let (cpu, rss) = table.sample();
        assert!(x > 0);
        assert!(cpu.get("loadgen").copied().unwrap_or(0) > 0, "{cpu:?}");
        assert!(rss.get("loadgen").copied().unwrap_or(0) > 0, "{rss:?}");
        let seconds = vec![
            ResourceSecond {
                cpu_ms: [("postgres".to_string(), 300)].into(),
                ..ResourceSecond::default()
            },
            ResourceSecond {
                cpu_ms: [("postgres".to_string(), 100)].into(),
                ..ResourceSecond::default()
            },
        ];
        assert_eq!(cpu_per_commit(&seconds, 200)["postgres"], 2.0);
    }
}
