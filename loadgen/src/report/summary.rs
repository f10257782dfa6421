//! What a run writes down: every figure, the scenario, the seed, the versions, the machine and the
//! exact command, as serde structs (summary.json round-trips), plus the per-second timeline.

use crate::load::recorder::SecondBucket;
use crate::run::probe::Floors;
use crate::scenario::{Protocol, Scenario};
use common::checker::CheckReport;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A latency distribution in milliseconds (floats are fine here: this is a report, not state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub n: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            n: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

impl ProtocolRun {
    /// The protocol's name, with the repetition when there were several: "twopc #2".
    pub fn label(&self) -> String {
        let name = self.protocol.map_or("unknown", |p| p.name());
        match self.repetition {
            Some(k) => format!("{name} #{k}"),
            None => name.to_string(),
        }
    }

    /// [`label`](Self::label) as a file name part: "twopc-2".
    pub fn file_stem(&self) -> String {
        let name = self.protocol.map_or("unknown", |p| p.name());
        match self.repetition {
            Some(k) => format!("{name}-{k}"),
            None => name.to_string(),
        }
    }

    /// The floor, when it is above the fastest committed order (it then bounds nothing and one
    /// of its primitives was measured wrong): `(floor, fastest)` in ms.
    pub fn floor_above_fastest(&self) -> Option<(f64, f64)> {
        match (self.floor_ms, self.fastest_committed_ms) {
            (Some(floor), Some(fastest)) if floor > fastest => Some((floor, fastest)),
            _ => None,
        }
    }
}

impl Percentiles {
    /// p50, p90, p99, p99.9 and max as text, each "–" when too few samples stand behind it: a
    /// quantile q needs at least 1/(1−q) of them (p99: 100, p99.9: 1,000), or it is just the max.
    pub fn cells(&self) -> [String; 5] {
        let at_least = |n: u64, v: f64| {
            if self.n >= n {
                format!("{v:.2}")
            } else {
                "–".to_string()
            }
        };
        [
            at_least(1, self.p50),
            at_least(10, self.p90),
            at_least(100, self.p99),
            at_least(1_000, self.p999),
            at_least(1, self.max),
        ]
    }
}

/// One process's own figures (fetched over `Metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceFigures {
    pub service: String,
    pub histograms: BTreeMap<String, Percentiles>,
    pub counters: BTreeMap<String, u64>,
    /// Largest values since the measurement began, in microseconds.
    pub maxima: BTreeMap<String, u64>,
    /// The settings the process reported running with (librdkafka's effective client
    /// configuration, timeouts, pool sizes).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// One protocol's run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtocolRun {
    pub protocol: Option<Protocol>,
    /// Which of the `--repeat` runs of this protocol this is (1-based); `None` when there was
    /// one run per protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition: Option<u32>,
    /// The floors measured right before this run (primitives drift with the machine's load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floors: Option<Floors>,
    /// The offered rate (orders/s) of an open-loop run.
    pub offered_rate: Option<f64>,
    pub measured_s: f64,
    pub started: u64,
    pub dropped_at_cap: u64,
    /// Requests with no Outcome, by gRPC code.
    pub errors: BTreeMap<String, u64>,
    pub outcomes: BTreeMap<String, u64>,
    /// Open loop: orders scheduled per second of the window (dropped ones included), the load
    /// offered, to read beside what was achieved.
    #[serde(default)]
    pub offered_per_s: Option<f64>,
    /// Achieved throughput: COMMITTED answers that arrived inside the measured window, per
    /// second of it. Past the knee this is the capacity, not the offered rate.
    pub committed_per_s: f64,
    /// COMMITTED answers that arrived after the window (the run waits for every answer).
    #[serde(default)]
    pub committed_after_window: u64,
    /// Share of started orders that were COMMITTED or REJECTED within the deadline.
    pub availability: f64,
    /// By outcome, and "ALL".
    pub latency: BTreeMap<String, Percentiles>,
    /// How late the generator started orders (open loop), in ms.
    pub schedule_lag: Option<Percentiles>,
    /// From scheduled start to the server's acceptance (sagas: order PENDING; 2PC: decided), ms.
    pub acceptance: Option<Percentiles>,
    /// Latency p50 of committed orders over the protocol's floor.
    pub p50_over_floor: Option<f64>,
    pub floor_ms: Option<f64>,
    /// The fastest committed order, in ms: a floor above it is no floor, and the report says so.
    #[serde(default)]
    pub fastest_committed_ms: Option<f64>,
    pub services: Vec<ServiceFigures>,
    pub timeline: Vec<SecondBucket>,
    pub check: CheckReport,
    /// Client answers compared with the databases, the warm-up's included.
    #[serde(default)]
    pub answers_checked: u64,
    /// Where the orders with no answer (transport errors, give-ups) ended, by order status
    /// after quiescence ("NONE": never written), warm-up included; counted apart from outcomes.
    #[serde(default)]
    pub unanswered_fates: BTreeMap<String, u64>,
    /// Once a second of the window: CPU and memory per process, PostgreSQL's WAL and
    /// checkpoints.
    #[serde(default)]
    pub resources: Vec<crate::run::resources::ResourceSecond>,
    /// CPU milliseconds per order committed inside the window, per process.
    #[serde(default)]
    pub cpu_ms_per_commit: BTreeMap<String, f64>,
    /// The window's second with the worst client p99, beside what the machine did in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowest_second: Option<crate::run::stalls::SlowestSecond>,
    /// The scenario's faults as they happened in this run, with availability in each window.
    #[serde(default)]
    pub faults: Vec<crate::run::faults::injector::FaultRecord>,
}

/// The machine and software behind the numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub load_average_at_start: String,
    /// `/proc/cpuinfo`'s model name.
    #[serde(default)]
    pub cpu_model: String,
    pub postgres: String,
    /// The durability and sizing settings as the server reports them (`SHOW`), not as
    /// configured: fsync, synchronous_commit, wal_sync_method, max_prepared_transactions, …
    #[serde(default)]
    pub postgres_settings: BTreeMap<String, String>,
    pub kafka: String,
    /// The file system under PostgreSQL's data, whose fsyncs every commit waits for: "ext4 on
    /// /dev/vda (not rotational)"; empty for a deployment.
    #[serde(default)]
    pub disk: String,
    /// The broker's own report of the settings in `common::kafka_clients::REPORTED_BROKER_CONFIGS`.
    #[serde(default)]
    pub kafka_broker_configs: BTreeMap<String, String>,
    /// The commit the binaries were built from.
    pub git_commit: String,
    /// The work tree had changes not in `git_commit` when they were built.
    #[serde(default)]
    pub git_dirty: bool,
    pub lab_version: String,
    /// The deployment file driven (`--deployment`); `None`: the local environment.
    #[serde(default)]
    pub deployment: Option<String>,
}

/// The mount holding `path` (the longest mount point it lies under), its file system type, and
/// whether its block device says it is rotational.
pub fn describe_disk(path: &std::path::Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Some((device, fs)) = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, point, _)| path.starts_with(point))
        .max_by_key(|(_, point, _)| point.len())
        .map(|(device, _, fs)| (device, fs))
    else {
        return String::new();
    };
    let name = device.rsplit('/').next().unwrap_or(device);
    let rotational = std::fs::read_to_string(format!("/sys/block/{name}/queue/rotational"))
        .ok()
        .map(|r| match r.trim() {
            "0" => " (not rotational)",
            _ => " (rotational)",
        })
        .unwrap_or("");
    format!("{fs} on {device}{rotational}")
}

impl Environment {
    pub fn read() -> Environment {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        let git_out = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        // The commit the binary was built from; read from the checkout only when the build had
        // no git (a source tarball), since the checkout may have moved on since the build.
        let (git, git_dirty) = match env!("TXLAB_BUILD_COMMIT") {
            "" => (
                git_out(&["rev-parse", "--short", "HEAD"]).unwrap_or_default(),
                git_out(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|changes| !changes.is_empty()),
            ),
            built => (built.to_string(), env!("TXLAB_BUILD_DIRTY") == "true"),
        };
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        Environment {
            hostname: read("/proc/sys/kernel/hostname"),
            os,
            kernel: read("/proc/sys/kernel/osrelease"),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            load_average_at_start: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            cpu_model,
            postgres: String::new(),
            postgres_settings: BTreeMap::new(),
            kafka: common::env::kafka::KAFKA_VERSION.to_string(),
            kafka_broker_configs: BTreeMap::new(),
            disk: String::new(),
            git_commit: git,
            git_dirty,
            lab_version: env!("CARGO_PKG_VERSION").to_string(),
            deployment: None,
        }
    }
}

impl Environment {
    /// Records a driven deployment; its Kafka is its own, not the lab's jars.
    pub fn set_deployment(&mut self, file: Option<&std::path::Path>) {
        if let Some(file) = file {
            self.deployment = Some(file.display().to_string());
            self.kafka = format!("the deployment's own (see {})", file.display());
        }
    }
}

/// Everything `summary.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The exact command line that produced this.
    pub command: String,
    pub started_at: String,
    pub scenario: Option<Scenario>,
    pub environment: Environment,
    pub floors: Floors,
    pub kafka_tuning: common::kafka_clients::ClientTuning,
    pub runs: Vec<ProtocolRun>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_round_trips_through_json() {
        let mut h = common::metrics::new_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let run = ProtocolRun {
            protocol: Some(Protocol::Twopc),
            measured_s: 10.0,
            started: 1000,
            outcomes: [("COMMITTED".to_string(), 990), ("REJECTED".to_string(), 10)].into(),
            latency: [("ALL".to_string(), Percentiles::of(&h))].into(),
            timeline: vec![SecondBucket {
                second: 0,
                scheduled: 100,
                committed: 99,
                ..SecondBucket::default()
            }],
            ..ProtocolRun::default()
        };
        let summary = Summary {
            command: "loadgen compare --scenario quick".into(),
            runs: vec![run],
            ..Summary::default()
        };
        let text = serde_json::to_string_pretty(&summary).unwrap();
        let back: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(back, summary);
        assert_eq!(back.runs[0].latency["ALL"].p50, 0.5);
    }

    #[test]
    fn quantiles_need_enough_samples_to_be_shown() {
        let mut h = common::metrics::new_histogram();
        for v in 1..=99 {
            h.record(v * 1000).unwrap();
        }
        let cells = Percentiles::of(&h).cells();
        assert!(cells[0].starts_with("50.0"), "{cells:?}");
        assert_eq!(&cells[2..4], ["–", "–"], "no p99 or p99.9 from 99 samples");
        assert!(cells[4].starts_with("99."), "{cells:?}");
        h.record(100_000).unwrap();
        let cells = Percentiles::of(&h).cells();
        assert_ne!(cells[2], "–", "p99 from 100 samples");
        assert_eq!(cells[3], "–");
        assert_eq!(Percentiles::default().cells(), ["–", "–", "–", "–", "–"]);
    }

    #[test]
    fn a_floor_above_the_fastest_committed_order_is_flagged() {
        let run = |floor_ms, fastest_committed_ms| ProtocolRun {
            floor_ms,
            fastest_committed_ms,
            ..ProtocolRun::default()
        };
        assert_eq!(
            run(Some(14.9), Some(13.8)).floor_above_fastest(),
            Some((14.9, 13.8))
        );
        assert_eq!(run(Some(4.0), Some(5.5)).floor_above_fastest(), None);
        assert_eq!(run(Some(4.0), None).floor_above_fastest(), None);
        assert_eq!(run(None, Some(5.5)).floor_above_fastest(), None);
    }

    #[test]
    fn the_disk_under_a_path_is_the_longest_mount_it_lies_under() {
        // Every Linux machine mounts / and /proc; /proc/self lies under both.
        let disk = describe_disk(std::path::Path::new("/proc/self"));
        assert!(disk.starts_with("proc on "), "{disk}");
        assert!(!describe_disk(std::path::Path::new("/")).is_empty());
    }
}
