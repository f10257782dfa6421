//! `soak`: many short randomized fault schedules per protocol, one after another on one
//! environment, the invariant checker after each (Jepsen's way of finding the rare history).
//! One row per schedule and protocol; the totals decide the exit code.

use crate::cli::SoakArgs;
use crate::report::spread::Spread;
use crate::report::summary::Environment;
use crate::run::environment::Lab;
use crate::run::experiment;
use crate::run::lab::{bin_dir, scenarios_dir};
use crate::scenario::{Protocol, Scenario};
use crate::LoadgenError;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One schedule under one protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoakRow {
    pub schedule: u64,
    pub seed: u64,
    pub protocol: Protocol,
    /// The drawn faults, by label ("pause payment 4–6 s"); "(n/a)" marks one that does not
    /// apply under this protocol.
    pub faults: Vec<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub availability: f64,
    /// The checker's findings, one line each, when there are any.
    pub findings: Vec<String>,
}

/// What `soak` writes to summary.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakSummary {
    pub command: String,
    pub started_at: String,
    pub scenario: Scenario,
    pub first_seed: u64,
    pub schedules: u64,
    pub environment: Environment,
    pub rows: Vec<SoakRow>,
}

/// What one schedule came to under one protocol; added up, a protocol's totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Orders scheduled (started or dropped at the in-flight cap).
    pub orders: u64,
    pub committed: u64,
    pub violations: usize,
    /// Orders left unfinished after settling (PENDING orders, prepared branches, open sagas).
    pub lost: usize,
    /// Answers that said the outcome is unknown (Jepsen's `info`): neither success nor failure.
    pub undecided: u64,
    /// Orders with no answer at all (transport errors, the client giving up).
    pub unanswered: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.orders += other.orders;
        self.committed += other.committed;
        self.violations += other.violations;
        self.lost += other.lost;
        self.undecided += other.undecided;
        self.unanswered += other.unanswered;
    }
}

/// Per-protocol totals over every schedule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub schedules: u64,
    pub counts: Counts,
}

impl SoakSummary {
    pub fn totals(&self, protocol: Protocol) -> Totals {
        let mut t = Totals::default();
        for row in self.rows.iter().filter(|r| r.protocol == protocol) {
            t.schedules += 1;
            t.counts.add(&row.counts);
        }
        t
    }

    pub fn protocols(&self) -> Vec<Protocol> {
        let mut seen = Vec::new();
        for row in &self.rows {
            if !seen.contains(&row.protocol) {
                seen.push(row.protocol);
            }
        }
        seen
    }

    /// Whether any schedule broke an invariant or lost an order.
    pub fn failed(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.counts.violations > 0 || r.counts.lost > 0)
    }

    /// The totals table (Markdown, also printed).
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| protocol | schedules | orders | committed | violations | lost | undecided | unanswered | availability per schedule, median (min–max) % |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for protocol in self.protocols() {
            let t = self.totals(protocol);
            let availability = Spread::of(
                self.rows
                    .iter()
                    .filter(|r| r.protocol == protocol)
                    .map(|r| 100.0 * r.availability),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                protocol.name(),
                t.schedules,
                t.counts.orders,
                t.counts.committed,
                t.counts.violations,
                t.counts.lost,
                t.counts.undecided,
                t.counts.unanswered,
                Spread::show(availability, 1)
            );
        }
        out
    }

    /// report.md: the command, the environment, the totals, then every row.
    pub fn markdown(&self) -> String {
        let e = &self.environment;
        let mut out = format!(
            "# Soak: {} randomized fault schedules per protocol\n\n\
             Command: `{}`  \nStarted: {}  \nScenario: `{}` (seeds {}–{}; each schedule is drawn \
             from its seed, so `loadgen compare --scenario {} --seed <seed>` replays one)  \n\
             Commit: `{}`{}  \nMachine: {} CPUs, {:.1} GiB, {}, kernel {}, load average at start {}; \
             PostgreSQL {}; Kafka {}\n\n",
            self.schedules,
            self.command,
            self.started_at,
            self.scenario.name,
            self.first_seed,
            self.first_seed + self.schedules.saturating_sub(1),
            self.scenario.name,
            e.git_commit,
            if e.git_dirty {
                " (built with uncommitted changes)"
            } else {
                ""
            },
            e.cpus,
            e.memory_gib,
            e.os,
            e.kernel,
            e.load_average_at_start,
            e.postgres,
            e.kafka,
        );
        out += &self.table();
        out += "\n*lost*: orders still unfinished after the run settled (PENDING orders, prepared \
                branches, open sagas). *undecided*: answers that said the outcome is unknown, \
                counted apart from success and failure. *unanswered*: no answer (transport error \
                or the client's give-up a minute past the deadline).\n\n\
                | schedule | seed | protocol | faults | orders | committed | availability | violations | lost | undecided |\n\
                |---|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1} % | {} | {} | {} |",
                r.schedule,
                r.seed,
                r.protocol.name(),
                r.faults.join("; "),
                r.counts.orders,
                r.counts.committed,
                r.availability * 100.0,
                r.counts.violations,
                r.counts.lost,
                r.counts.undecided
            );
        }
        for r in self.rows.iter().filter(|r| !r.findings.is_empty()) {
            let _ = writeln!(
                out,
                "\n## Findings: schedule {} ({})\n",
                r.schedule,
                r.protocol.name()
            );
            for line in &r.findings {
                let _ = writeln!(out, "- {line}");
            }
        }
        out
    }
}

/// Runs the soak and writes `<results_dir>/<time>-soak/`; returns that folder and the summary.
pub async fn run(args: &SoakArgs, command: String) -> Result<(PathBuf, SoakSummary), LoadgenError> {
    let mut scenario = Scenario::load(&args.scenario, &scenarios_dir())?;
    if scenario.random_faults.is_none() {
        return Err(LoadgenError::BadFlag {
            flag: "--scenario",
            reason: format!(
                "{} has no [random_faults] section; soak draws a new schedule per seed (try --scenario random)",
                args.scenario
            ),
        });
    }
    if args.schedules == 0 {
        return Err(LoadgenError::BadFlag {
            flag: "--schedules",
            reason: "must be at least 1".into(),
        });
    }
    let protocols = if args.protocols.is_empty() {
        scenario.protocols.clone()
    } else {
        args.protocols.clone()
    };
    let started_at = chrono::Utc::now();
    let mut environment = Environment::read();
    let topology = args.env.topology.unwrap_or(scenario.topology);
    let mut lab = Lab::start(&args.env.run_dir, topology, true).await?;
    crate::run::lab::observe_systems(&mut environment, &lab).await;
    let floors = crate::run::probe::Floors::default();
    let bins = bin_dir()?;
    let logs = args.env.run_dir.join("logs");
    let mut rows = Vec::new();
    for schedule in 0..args.schedules {
        let seed = args.seed + schedule;
        scenario.reseed(seed, Path::new(&args.scenario))?;
        for &protocol in &protocols {
            eprintln!(
                "soak: schedule {}/{} (seed {seed}), {}",
                schedule + 1,
                args.schedules,
                protocol.name()
            );
            let run = experiment::measure(&mut lab, &scenario, protocol, &floors, &bins, &logs)
                .await?
                .run;
            let row = row_of(schedule, seed, protocol, &run);
            println!(
                "schedule {:>3} seed {seed:<6} {:<18} {:>5} orders {:>5} committed  {} violations  {} lost  {} undecided  [{}]",
                schedule + 1,
                protocol.name(),
                row.counts.orders,
                row.counts.committed,
                row.counts.violations,
                row.counts.lost,
                row.counts.undecided,
                row.faults.join("; ")
            );
            rows.push(row);
        }
    }
    lab.stop();
    let summary = SoakSummary {
        command,
        started_at: started_at.to_rfc3339(),
        scenario,
        first_seed: args.seed,
        schedules: args.schedules,
        environment,
        rows,
    };
    let dir = args
        .results_dir
        .join(format!("{}-soak", started_at.format("%Y%m%dT%H%M%SZ")));
    write(&dir, &summary)?;
    Ok((dir, summary))
}

fn row_of(
    schedule: u64,
    seed: u64,
    protocol: Protocol,
    run: &crate::report::summary::ProtocolRun,
) -> SoakRow {
    let outcome = |name: &str| run.outcomes.get(name).copied().unwrap_or(0);
    let orders: u64 = run.timeline.iter().map(|b| b.scheduled).sum();
    let answered: u64 = run.outcomes.values().sum();
    SoakRow {
        schedule: schedule + 1,
        seed,
        protocol,
        faults: run
            .faults
            .iter()
            .map(|f| {
                if f.applies {
                    f.label.clone()
                } else {
                    format!("{} (n/a)", f.label)
                }
            })
            .collect(),
        counts: Counts {
            orders,
            committed: outcome("COMMITTED"),
            violations: run.check.violations.len(),
            lost: run.check.leftovers.len(),
            undecided: outcome("UNDECIDED"),
            unanswered: orders.saturating_sub(answered + run.dropped_at_cap),
        },
        availability: run.availability,
        findings: run.check.describe(),
    }
}

fn write(dir: &Path, summary: &SoakSummary) -> Result<(), LoadgenError> {
    let io = |what: &'static str| move |source| LoadgenError::Io { what, source };
    std::fs::create_dir_all(dir).map_err(io("creating the soak's folder"))?;
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| LoadgenError::Report(format!("summary.json: {e}")))?;
    std::fs::write(dir.join("summary.json"), json).map_err(io("writing summary.json"))?;
    std::fs::write(dir.join("report.md"), summary.markdown()).map_err(io("writing report.md"))?;
    Ok(())
}
