//! The result folder of a run: `summary.json`, `timeline.csv`, one HdrHistogram interval log per
//! protocol, the SVG plots and `report.md`, which a person can publish as it is.

mod charts;
mod faults;
pub mod figures;
pub mod plots;
pub mod print;
mod raw;
mod repetitions;
mod resources;
mod settings;
pub mod spread;
pub mod summary;
mod sweep;

pub use sweep::write_sweep;

use crate::report::summary::{Percentiles, Summary};
use crate::run::experiment::Measured;
use crate::run::probe::composition;
use crate::LoadgenError;
use std::fmt::Write as _;
use std::path::Path;
use twopc::coordinator::PrepareOrder;

fn report_err(e: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Report(e.to_string())
}

/// Writes everything into `dir` (created if missing).
pub fn write(dir: &Path, summary: &Summary, measured: &[Measured]) -> Result<(), LoadgenError> {
    std::fs::create_dir_all(dir).map_err(report_err)?;
    let json = serde_json::to_string_pretty(summary).map_err(report_err)?;
    std::fs::write(dir.join("summary.json"), json).map_err(report_err)?;
    std::fs::write(dir.join("timeline.csv"), raw::timeline_csv(summary)).map_err(report_err)?;
    for m in measured {
        raw::write_hlog(dir, m)?;
    }
    charts::write_plots(dir, summary, measured)?;
    std::fs::write(dir.join("report.md"), markdown(summary)).map_err(report_err)?;
    Ok(())
}

fn name_of(m: &Measured) -> String {
    m.run.label()
}

/// Per second: the answers to the orders *scheduled* in it, then the commits that *arrived* in it.
/// What the checker compared with the client's view, and where unanswered orders ended.
fn answers_checked(summary: &Summary) -> String {
    let mut md = String::new();
    for r in &summary.runs {
        let unanswered: u64 = r.unanswered_fates.values().sum();
        let fates: Vec<String> = r
            .unanswered_fates
            .iter()
            .map(|(status, n)| match status.as_str() {
                "NONE" => format!("{n} never written"),
                status => format!("{n} {status}"),
            })
            .collect();
        let _ = writeln!(
            md,
            "- {}: {} client answers (warm-up included) agree with the databases{}; {unanswered} orders got no answer{}.",
            r.label(),
            r.answers_checked,
            if r.check.violations.is_empty() { "" } else { " except where listed as violations" },
            if fates.is_empty() {
                String::new()
            } else {
                format!(", and ended: {}", fates.join(", "))
            }
        );
    }
    if !md.is_empty() {
        md.push('\n');
    }
    md
}

/// What `locks.svg` shows, defined once for every protocol.
const LOCKS_CAPTION: &str = "*Lock hold*: 2PC row locks, first granted → COMMIT/ROLLBACK (PREPARED) or a refusal's rollback; saga semantic locks, read from the rows after the run the same way for both modes: from the local transaction that took the reservation or the charge to the one that made it final (reservation COMMITTED, order CONFIRMED) or compensated it (RELEASED, REFUNDED), by the rows' timestamps. *in_doubt*: a 2PC branch, from PREPARE to the decision it had to ask for. *lock_wait* (in the tables): from a branch's first lock request to its last grant.";

/// The figures `locks.svg` draws: 2PC's row-lock hold and in-doubt time, the sagas' semantic
/// locks (lock *wait* is a queueing figure and stays in the tables).
fn is_lock_figure(name: &str) -> bool {
    name == "lock_hold" || name == "in_doubt" || name.starts_with("semantic_lock")
}

/// "name=value, …" as a server reported them, or "not read".
fn settings(reported: &std::collections::BTreeMap<String, String>) -> String {
    if reported.is_empty() {
        return "not read".into();
    }
    let pairs: Vec<String> = reported.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(", ")
}

/// The provenance line every report starts with: the exact command, when, and which code.
fn produced_by(summary: &Summary) -> String {
    let e = &summary.environment;
    format!(
        "Produced by `{}` on {} (lab {} at commit {}{}).",
        summary.command,
        summary.started_at,
        e.lab_version,
        e.git_commit,
        if e.git_dirty {
            ", with uncommitted changes"
        } else {
            ""
        }
    )
}

fn row(p: &Percentiles) -> String {
    p.cells().join(" | ")
}

fn per_s(rate: Option<f64>) -> String {
    rate.map_or("–".into(), |r| format!("{r:.1}"))
}

/// The report a person reads: what ran, on what, with which command, and the figures side by side.
pub fn markdown(summary: &Summary) -> String {
    let mut md = String::new();
    let scenario = summary.scenario.as_ref();
    let name = scenario.map_or("ad hoc", |s| s.name.as_str());
    let _ = writeln!(md, "# txlab: {name}\n");
    if let Some(s) = scenario {
        if !s.description.is_empty() {
            let _ = writeln!(md, "{}\n", s.description);
        }
    }
    let _ = writeln!(md, "{}\n", produced_by(summary));

    let _ = writeln!(md, "## Results\n");
    if scenario.is_some_and(|s| s.load.mode == crate::scenario::LoadMode::Closed) {
        let _ = writeln!(md, "**Closed loop: coordinated omission.** Each client waits for its answer before it sends the next order, so a stalled system is sent fewer orders exactly while it is slow: the slow seconds are under-sampled, the latency percentiles are optimistic and availability counts only the orders the clients got round to sending. Read these figures as service times at a fixed concurrency; the open-loop runs are the ones that charge a stall to every order it delayed.\n");
    }
    let _ = writeln!(md, "*offered/s*: orders scheduled per second (open loop); *committed/s*: COMMITTED answers that arrived inside the measured window, per second (achieved; past the knee it falls below the offered rate). Latency covers every answered order, whatever its outcome (per outcome below); *n* is how many; a p99 needs 100 of them and a p99.9 1,000, else \"–\". *p50 / floor*: committed p50 over the protocol's floor.\n");
    let _ = writeln!(md, "| protocol | offered/s | committed/s | availability | n | all outcomes p50 / p90 / p99 / p99.9 / max (ms) | p50 / floor | violations | leftovers | dropped | errors |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &summary.runs {
        let all = r.latency.get("ALL").cloned().unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} % | {} | {} | {} | {} | {} | {} | {} |",
            r.label(),
            per_s(r.offered_per_s),
            r.committed_per_s,
            100.0 * r.availability,
            all.n,
            row(&all).replace(" | ", " / "),
            r.p50_over_floor.map_or("–".into(), |x| format!("{x:.1}×")),
            r.check.violations.len(),
            r.check.leftovers.len(),
            r.dropped_at_cap,
            r.errors.values().sum::<u64>()
        );
    }
    let _ = writeln!(md);
    md.push_str(&answers_checked(summary));
    md.push_str(&repetitions::section(summary));
    let _ = writeln!(md, "![latency](latency.svg)\n\n![throughput](throughput.svg)\n\n![availability](availability.svg)\n\n![locks](locks.svg)\n\n{LOCKS_CAPTION}\n\n![floor](floor.svg)\n");
    for run in summary.runs.iter().filter(|r| !r.faults.is_empty()) {
        let (name, stem) = (run.label(), run.file_stem());
        let _ = writeln!(
            md,
            "![faults {name}](faults-{stem}.svg)\n\n{name}: each fault shaded from when it was applied to when it was healed (a restart can take longer than scheduled).\n"
        );
    }

    md.push_str(&faults::section(summary));
    md.push_str(&resources::section(summary));
    let _ = writeln!(md, "## Outcomes and latency by outcome (ms)\n");
    let _ = writeln!(
        md,
        "| protocol | outcome | n | p50 | p90 | p99 | p99.9 | max |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for r in &summary.runs {
        let all = r.latency.get_key_value("ALL");
        let outcomes = r.latency.iter().filter(|(k, _)| k.as_str() != "ALL");
        for (outcome, p) in all.into_iter().chain(outcomes) {
            let _ = writeln!(md, "| {} | {outcome} | {} | {} |", r.label(), p.n, row(p));
        }
    }

    let _ = writeln!(md, "\n## Acceptance and cost\n");
    let _ = writeln!(md, "Acceptance: from scheduled start until the server durably accepted the order (sagas: order PENDING; 2PC accepts only when it decides). Messages: Kafka messages the outbox relays published, per started order. Generator lag: how late the load generator started orders (it sleeps on a kernel high-resolution timer until 100 µs before each start and yields through the rest, so only a wake-up later than that shows); latency is measured from the scheduled start, so it includes this lag, the same for every protocol.\n");
    let _ = writeln!(md, "| protocol | acceptance p50 / p99 (ms) | messages per order | bytes per order | generator lag p50 / p99 (ms) |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for r in &summary.runs {
        let counter = |name: &str| {
            r.services
                .iter()
                .filter_map(|s| s.counters.get(name))
                .sum::<u64>()
        };
        let per_order = |n: u64| {
            if n == 0 {
                "–".to_string()
            } else {
                format!("{:.1}", n as f64 / r.started.max(1) as f64)
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.label(),
            r.acceptance
                .as_ref()
                .map_or("–".into(), |a| format!("{:.2} / {:.2}", a.p50, a.p99)),
            per_order(counter("relay.published")),
            per_order(counter("relay.bytes")),
            r.schedule_lag
                .as_ref()
                .map_or("–".into(), |l| format!("{:.3} / {:.3}", l.p50, l.p99))
        );
    }
    let _ = writeln!(
        md,
        "\n## Inside the protocols (each process's own histograms, ms)\n"
    );
    let _ = writeln!(
        md,
        "| protocol | process | measure | n | p50 | p90 | p99 | p99.9 | max |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for r in &summary.runs {
        for s in &r.services {
            for (measure, p) in &s.histograms {
                let _ = writeln!(
                    md,
                    "| {} | {} | {measure} | {} | {} |",
                    r.label(),
                    s.service,
                    p.n,
                    row(p)
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "\nCounters and maxima per process are in `summary.json`.\n"
    );

    let _ = writeln!(
        md,
        "## Floors (medians of {} samples each, measured right before each run)\n",
        summary.floors.samples
    );
    let against = match summary.floors.grpc_against.as_str() {
        "" => "loopback, no-op server",
        against => against,
    };
    let _ = writeln!(md, "Primitives, in µs: a gRPC round trip ({against}); a PostgreSQL single-row INSERT + COMMIT (fsync on); UPDATE + PREPARE TRANSACTION + COMMIT PREPARED; a Kafka hop (idempotent producer, acks=all, from handing the message to the producer until the consumer has it). A floor is the least a committed order can take, composed from them; it must lie below the fastest committed order.\n");
    let _ = writeln!(md, "| run | gRPC | commit | prepare + commit prepared | Kafka hop | floor (ms) | fastest committed order (ms) | composed of |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for r in &summary.runs {
        let Some(p) = r.protocol else { continue };
        let f = r.floors.as_ref().unwrap_or(&summary.floors);
        let _ = writeln!(
            md,
            "| {}{} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} |",
            r.label(),
            if f.reused {
                " (probe failed: the previous run's floors)"
            } else {
                ""
            },
            f.grpc_round_trip_us,
            f.pg_commit_us,
            f.pg_prepare_commit_us,
            f.kafka_hop_us,
            r.floor_ms.unwrap_or(0.0),
            r.fastest_committed_ms
                .map_or("–".into(), |f| format!("{f:.2}")),
            composition(
                p,
                summary
                    .scenario
                    .as_ref()
                    .map_or(PrepareOrder::Parallel, |s| s.twopc.prepare_order)
            )
        );
    }
    for r in &summary.runs {
        if let Some((floor, fastest)) = r.floor_above_fastest() {
            let _ = writeln!(
                md,
                "\n**{}: the floor ({floor:.2} ms) is above the fastest committed order ({fastest:.2} ms)**: in this run it is no lower bound. Its primitives' medians add up to more than the protocol's quickest path took, e.g. because they were probed under other conditions (a broker not yet warmed up), so p50 / floor understates the overhead.",
                r.label()
            );
        }
    }

    let e = &summary.environment;
    let t = &summary.kafka_tuning;
    let _ = writeln!(md, "\n## Environment\n");
    let _ = writeln!(
        md,
        "- machine: {} ({}, kernel {}), {} CPUs ({}), {} GiB; load average at start {}",
        e.hostname,
        e.os,
        e.kernel,
        e.cpus,
        if e.cpu_model.is_empty() {
            "model unknown"
        } else {
            &e.cpu_model
        },
        e.memory_gib,
        e.load_average_at_start
    );
    let _ = writeln!(
        md,
        "- PostgreSQL {} as the server reported it{}: {}",
        if e.postgres.is_empty() {
            "(unreachable)"
        } else {
            &e.postgres
        },
        if e.disk.is_empty() {
            String::new()
        } else {
            format!(", its data on {}", e.disk)
        },
        settings(&e.postgres_settings)
    );
    match &e.deployment {
        None => {
            let topology = summary
                .scenario
                .as_ref()
                .map(|s| s.topology)
                .unwrap_or_default();
            let shape = match topology {
                common::env::Topology::Single => {
                    "KRaft, one broker; one PostgreSQL cluster holds every owner's databases"
                }
                common::env::Topology::Replicated => {
                    "KRaft, three nodes each broker and controller, 512 MiB heap each, topics with replication factor 3 and min.insync.replicas 2, producers acks=all; one PostgreSQL cluster per owner (the settings above are the first one's, all started alike)"
                }
            };
            let _ = writeln!(
                md,
                "- topology `{}`: Apache Kafka {} (the lab's pinned release; {shape})",
                topology.as_str(),
                e.kafka
            );
            let _ = writeln!(
                md,
                "- Kafka broker settings as the broker reported them: {}",
                settings(&e.kafka_broker_configs)
            );
            let _ = writeln!(
                md,
                "- Kafka clients: fetch.wait.max.ms={}, fetch.min.bytes={}, linger.ms={}, reconnect.backoff.max.ms={}; saga consumer groups use the KIP-848 protocol, session {} ms",
                t.fetch_wait_max_ms,
                t.fetch_min_bytes,
                t.linger_ms,
                t.reconnect_backoff_max_ms,
                common::kafka_clients::GROUP_SESSION_TIMEOUT_MS
            );
        }
        Some(file) => {
            let _ = writeln!(
                md,
                "- deployed: `{file}` names the fronts, metrics endpoints and databases; the lab started none of them. The protocols' knobs (prepare timeout and order, step timeout, Kafka client settings) are the deployment's own flags, not the scenario's."
            );
            let _ = writeln!(md, "- PostgreSQL {}, Kafka: {}", e.postgres, e.kafka);
        }
    }
    md.push_str(&settings::section(summary));
    if let Some(s) = scenario {
        let _ = writeln!(
            md,
            "\n## Scenario\n\n```toml\n{}```",
            toml::to_string(s).unwrap_or_default()
        );
    }
    let _ = writeln!(md, "\nRaw data: `summary.json` (every figure), `timeline.csv` (per second), `<protocol>.hlog` (HdrHistogram interval logs, µs, tagged by outcome).");
    md
}
