//! Carrying out a fault schedule while the load runs, and what each fault did to availability.

use super::remote::RemoteFaults;
use super::schedule::{FaultKind, FaultSpec, Role};
use super::settle::{db_now, settle_time};
use crate::load::recorder::SecondBucket;
use crate::run::protocols::Running;
use common::env::LabEnv;
use common::fault_proxy::LinkFault;
use common::metrics::pb::{Snapshot, SnapshotRequest};
use common::metrics::MetricsClient;
use common::storage::Databases;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What happened to one scheduled fault in one protocol's run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// e.g. "partition payment 10–15 s".
    pub label: String,
    pub at_s: u64,
    pub ends_at_s: u64,
    /// False when the role has nothing to act on under this protocol (the broker under 2PC,
    /// the coordinator under choreography).
    pub applies: bool,
    /// What was done: the links cut, the process killed, how long its restart took.
    pub note: String,
    /// When it was applied and healed, seconds after the measured load began.
    pub applied_s: Option<f64>,
    pub healed_s: Option<f64>,
    /// A heal that failed (e.g. a restart that did not come up).
    pub error: Option<String>,
    /// Orders scheduled while the fault held (applied to healed), and the share of them available (COMMITTED or
    /// REJECTED within the deadline).
    pub scheduled_in_window: u64,
    pub availability_in_window: Option<f64>,
    /// Seconds from the real heal until three 1 s buckets in a row are again at least 99 %
    /// available; `None` if that did not happen before the run ended.
    pub recovery_s: Option<u64>,
    /// The broker node a fault on the broker acted on: under the replicated topology the one
    /// that led the most partitions of the run's topics when the fault began.
    #[serde(default)]
    pub broker_node: Option<u32>,
    /// Seconds from the heal until every order begun before it was final in the databases (no
    /// PENDING order, no prepared branch left from before): `None` if not within 120 s.
    #[serde(default)]
    pub settled_after_heal_s: Option<f64>,
}

/// What a fault acts on.
pub enum Targets<'a> {
    /// The local environment: the lab's proxies, processes, brokers and clusters.
    Local {
        running: &'a mut Running,
        env: &'a mut LabEnv,
    },
    /// A deployment: its Toxiproxy and the file's command templates.
    Remote(&'a RemoteFaults),
}

/// What carrying out a schedule gave: a record per fault, and the figures of each process read
/// just before it was killed (a restarted process starts with empty histograms).
pub struct Injected {
    pub records: Vec<FaultRecord>,
    pub before_kills: Vec<Snapshot>,
}

/// How long reading a process's figures before its kill may delay the kill.
const SNAPSHOT_BEFORE_KILL: Duration = Duration::from_millis(500);

/// The process's figures so far, or `None` (logged) if it does not answer in time: then its
/// figures before the kill are lost, as they would be without this.
async fn snapshot_before_kill(url: String) -> Option<Snapshot> {
    let read = async {
        let mut client = MetricsClient::connect(url.clone())
            .await
            .map_err(|e| e.to_string())?;
        client
            .get_snapshot(SnapshotRequest { reset: false })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_string())
    };
    match tokio::time::timeout(SNAPSHOT_BEFORE_KILL, read).await {
        Ok(Ok(snapshot)) => Some(snapshot),
        Ok(Err(e)) => {
            tracing::warn!(%url, error = %e, "no figures before the kill");
            None
        }
        Err(_) => {
            tracing::warn!(%url, "no figures before the kill within {SNAPSHOT_BEFORE_KILL:?}");
            None
        }
    }
}

/// How often a crashed process or broker is started again before the heal counts as failed.
const RESTART_ATTEMPTS: u32 = 3;

/// How long after a heal the lab waits for the work begun before it to finish.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

enum Edge {
    Start,
    Heal,
}

/// Applies and heals every fault of `schedule` at its time after `begin`, returning a record
/// per fault (in schedule order). Every fault is healed before this returns. `dbs` are the
/// run's databases, to see when the work begun before a heal has all finished.
pub async fn inject(
    schedule: &[FaultSpec],
    begin: Instant,
    mut targets: Targets<'_>,
    dbs: &Databases,
) -> Injected {
    let mut records: Vec<FaultRecord> = schedule
        .iter()
        .map(|f| FaultRecord {
            label: f.label(),
            at_s: f.at_s,
            ends_at_s: f.ends_at_s(),
            ..FaultRecord::default()
        })
        .collect();
    let mut edges: Vec<(u64, usize, Edge)> = Vec::new();
    for (i, fault) in schedule.iter().enumerate() {
        edges.push((fault.at_s, i, Edge::Start));
        edges.push((fault.ends_at_s(), i, Edge::Heal));
    }
    // At the same second, heal before starting the next fault.
    edges.sort_by_key(|(t, i, e)| (*t, matches!(e, Edge::Start), *i));
    // Each heal's settle watch runs as its own task, so it keeps time while later faults apply.
    let mut settling = JoinSet::new();
    let mut before_kills = Vec::new();
    for (at, i, edge) in edges {
        tokio::time::sleep_until((begin + Duration::from_secs(at)).into()).await;
        let fault = &schedule[i];
        let record = &mut records[i];
        let now = || begin.elapsed().as_secs_f64();
        match edge {
            Edge::Start => {
                let (applies, note) = match &mut targets {
                    Targets::Local { running, env } => {
                        if fault.kind == FaultKind::Crash {
                            if let Some(url) = running.metrics_url_of(fault.target) {
                                before_kills.extend(snapshot_before_kill(url).await);
                            }
                        }
                        record.broker_node = broker_node(fault, running, env).await;
                        start(fault, record.broker_node, running, env)
                    }
                    Targets::Remote(remote) => match remote.start(fault).await {
                        Ok(started) => started,
                        Err(e) => {
                            record.error = Some(e.clone());
                            (false, format!("could not apply: {e}"))
                        }
                    },
                };
                record.applies = applies;
                record.note = note;
                if applies {
                    record.applied_s = Some(now());
                    eprintln!("  fault: {} ({})", fault.label(), record.note);
                } else {
                    eprintln!("  fault: {} does not apply: {}", fault.label(), record.note);
                }
            }
            Edge::Heal if record.applies => {
                let healing = Instant::now();
                // A crashed database tells its clock only once it is back.
                let database_down =
                    fault.kind == FaultKind::Crash && fault.target.owner().is_some();
                let before = if database_down {
                    None
                } else {
                    Some(db_now(dbs).await)
                };
                let healed = match &mut targets {
                    Targets::Local { running, env } => {
                        heal(fault, record.broker_node, running, env).await
                    }
                    Targets::Remote(remote) => remote.heal(fault).await,
                };
                let since = match before {
                    Some(since) => since,
                    None => db_now(dbs).await,
                };
                match since {
                    Ok(since) => {
                        let dbs = dbs.clone();
                        settling.spawn(async move {
                            (i, settle_time(&dbs, since, healing, SETTLE_LIMIT).await)
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the database clock"),
                }
                match healed {
                    Ok(()) => {
                        if fault.kind == FaultKind::Crash {
                            let what = match targets {
                                Targets::Local { .. } => "restarted, listening",
                                Targets::Remote(_) => "restored",
                            };
                            record.note +=
                                &format!("; {what} {} ms later", healing.elapsed().as_millis());
                        }
                    }
                    Err(e) => record.error = Some(e),
                }
                record.healed_s = Some(now());
                eprintln!("  healed: {}", fault.label());
            }
            Edge::Heal => {}
        }
    }
    while let Some(done) = settling.join_next().await {
        if let Ok((i, settled)) = done {
            match settled {
                Ok(settled) => records[i].settled_after_heal_s = settled.map(|d| d.as_secs_f64()),
                // Not "never": unknown, and the report says why.
                Err(e) => records[i].note += &format!("; settle time unknown: {e}"),
            }
        }
    }
    Injected {
        records,
        before_kills,
    }
}

/// What a link fault sets on the role's proxies (`None`: the fault does not act on links).
fn link_fault(fault: &FaultSpec) -> Option<LinkFault> {
    match fault.kind {
        FaultKind::Partition | FaultKind::Isolate => Some(LinkFault::Partition),
        FaultKind::Reset => Some(LinkFault::Reset),
        FaultKind::Delay => Some(LinkFault::Delay {
            latency: Duration::from_millis(fault.latency_ms.unwrap_or(0)),
            jitter: Duration::from_millis(fault.jitter_ms.unwrap_or(0)),
        }),
        FaultKind::Crash | FaultKind::Pause | FaultKind::Surge => None,
    }
}

/// The broker node a saga run's fault on the broker acts on: the only one, or (replicated) the
/// one leading most partitions of the run's topics now, so the fault forces leader elections.
async fn broker_node(fault: &FaultSpec, running: &Running, env: &LabEnv) -> Option<u32> {
    if fault.target != Role::Broker || !running.is_saga() || fault.kind == FaultKind::Surge {
        return None;
    }
    if env.kafka.brokers().len() == 1 {
        return Some(1);
    }
    let prefix = running.saga_prefix().unwrap_or_default();
    Some(env.kafka.leader_of(&prefix).await.unwrap_or(1))
}

/// Applies `fault` (on broker node `node`, for a fault on the broker); returns whether it
/// applies here and what was done.
fn start(
    fault: &FaultSpec,
    node: Option<u32>,
    running: &mut Running,
    env: &mut LabEnv,
) -> (bool, String) {
    let target = fault.target;
    let replicated = env.kafka.brokers().len() > 1;
    match fault.kind {
        // The load generator applies it itself, at the same seconds (open::Surge).
        FaultKind::Surge => (
            true,
            format!("offered rate ×{}", fault.factor.unwrap_or(1.0)),
        ),
        FaultKind::Crash if target.owner().is_some() => {
            let Some(store) = running.store_of(target) else {
                return (false, "choreography has no coordinator's database".into());
            };
            if !env.postgres.per_owner() {
                return (
                    false,
                    "on the single topology one cluster holds every database (crash one with --topology replicated)".into(),
                );
            }
            let cluster = env.postgres.cluster_of_mut(store);
            let pid = cluster.pid();
            cluster.kill();
            (
                true,
                format!(
                    "SIGKILL the {} cluster (postmaster pid {pid})",
                    cluster.name()
                ),
            )
        }
        FaultKind::Crash | FaultKind::Pause if target == Role::Broker => {
            let Some(broker) = node.and_then(|n| env.kafka.broker_mut(n)) else {
                return (false, "2PC does not use the broker".into());
            };
            let (pid, which) = (broker.pid(), broker_name(broker.node(), replicated));
            if fault.kind == FaultKind::Crash {
                broker.kill();
                (true, format!("SIGKILL {which} (pid {pid})"))
            } else {
                broker.pause();
                (true, format!("SIGSTOP {which} (pid {pid})"))
            }
        }
        FaultKind::Partition | FaultKind::Delay | FaultKind::Reset
            if target == Role::Broker && replicated =>
        {
            let (Some(node), Some(network), Some(link)) =
                (node, running.network.as_ref(), link_fault(fault))
            else {
                return (false, "2PC does not use the broker".into());
            };
            let links = network.set_on_broker_node(node, link);
            (
                true,
                format!(
                    "{}: links {} (the links between brokers stay up)",
                    broker_name(node, true),
                    links.join(", ")
                ),
            )
        }
        FaultKind::Crash | FaultKind::Pause => {
            let (done, signal) = if fault.kind == FaultKind::Crash {
                (running.crash(target), "SIGKILL")
            } else {
                (running.pause(target), "SIGSTOP")
            };
            if done {
                (true, format!("{signal} {}", target.as_str()))
            } else {
                (false, format!("no {} process here", target.as_str()))
            }
        }
        FaultKind::Partition | FaultKind::Delay | FaultKind::Reset | FaultKind::Isolate => {
            let front = running.front_role() == target;
            let Some(network) = running.network.as_ref() else {
                return (false, "links are not proxied".into());
            };
            let links = match (fault.kind, link_fault(fault)) {
                (FaultKind::Isolate, _) => network.isolate(target, front),
                (_, Some(link)) => network.set(target, link),
                (_, None) => Vec::new(),
            };
            if links.is_empty() {
                (false, format!("no link of {} here", target.as_str()))
            } else {
                (true, format!("links {}", links.join(", ")))
            }
        }
    }
}

/// "broker", or "broker 2 (leader)" on the replicated cluster.
fn broker_name(node: u32, replicated: bool) -> String {
    if replicated {
        format!("broker {node} (leader)")
    } else {
        "broker".into()
    }
}

/// Ends `fault` (on broker node `node`, for a fault on the broker): restarts a crashed process
/// (and waits until it serves), continues a paused one, restores the links.
async fn heal(
    fault: &FaultSpec,
    node: Option<u32>,
    running: &mut Running,
    env: &mut LabEnv,
) -> Result<(), String> {
    match fault.kind {
        FaultKind::Crash => restart(fault.target, node, running, env).await,
        FaultKind::Pause => {
            if fault.target == Role::Broker {
                if let Some(broker) = node.and_then(|n| env.kafka.broker_mut(n)) {
                    broker.resume();
                }
            } else {
                running.resume(fault.target);
            }
            Ok(())
        }
        FaultKind::Surge => Ok(()),
        FaultKind::Isolate => {
            let front = running.front_role() == fault.target;
            if let Some(network) = running.network.as_ref() {
                network.rejoin(fault.target, front);
            }
            Ok(())
        }
        FaultKind::Partition | FaultKind::Delay | FaultKind::Reset => {
            if let Some(network) = running.network.as_ref() {
                network.set(fault.target, LinkFault::Healthy);
            }
            Ok(())
        }
    }
}

/// Starts a crashed process, broker node or database cluster again on the same ports. A restart that fails is
/// tried again: a process left dead would break every later measurement of this run (and, for
/// the broker, of the next protocols).
async fn restart(
    role: Role,
    node: Option<u32>,
    running: &mut Running,
    env: &mut LabEnv,
) -> Result<(), String> {
    let mut last_error = String::new();
    for attempt in 1..=RESTART_ATTEMPTS {
        let database = role.owner().and(running.store_of(role));
        let restarted = if let Some(store) = database {
            let cluster = env.postgres.cluster_of_mut(store);
            cluster
                .restart()
                .await
                .map_err(|e| format!("restarting the {} cluster: {e}", cluster.name()))
        } else if role == Role::Broker {
            match node.and_then(|n| env.kafka.broker_mut(n)) {
                Some(broker) => broker
                    .restart()
                    .await
                    .map_err(|e| format!("restarting broker {}: {e}", broker.node())),
                None => Ok(()),
            }
        } else {
            running
                .restart(role)
                .await
                .map_err(|e| format!("restarting {}: {e}", role.as_str()))
        };
        match restarted {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "restart failed");
                last_error = e;
            }
        }
    }
    Err(format!("{last_error} (after {RESTART_ATTEMPTS} attempts)"))
}

/// Seconds in a row that must be ≥ 99 % available for a fault to count as recovered from.
const RECOVERED_FOR: usize = 3;

/// Fills each record's window figures from the run's per-second timeline (buckets by scheduled
/// start). The window is when the fault really held — from applied to healed, which for a slow
/// restart is later than scheduled — and recovery counts from the real heal: the first of
/// [`RECOVERED_FOR`] seconds in a row at ≥ 99 % (fewer if the next fault or the run's end comes
/// first); none if the next fault starts before that.
pub fn score(records: &mut [FaultRecord], timeline: &[SecondBucket]) {
    let recovered = |b: &SecondBucket| b.scheduled > 0 && b.available * 100 >= b.scheduled * 99;
    let window_of = |r: &FaultRecord| {
        let from = r.applied_s.map_or(r.at_s, |s| s.floor() as u64);
        let to = r
            .healed_s
            // A heal done within 100 ms of a second's start counts from that second.
            .map_or(r.ends_at_s, |s| (s - 0.1).ceil().max(0.0) as u64)
            .max(from + 1);
        (from, to)
    };
    let starts: Vec<u64> = records
        .iter()
        .filter(|r| r.applies)
        .map(|r| window_of(r).0)
        .collect();
    for record in records.iter_mut().filter(|r| r.applies) {
        let (from, to) = window_of(record);
        let window: Vec<&SecondBucket> = timeline
            .iter()
            .filter(|b| b.second >= from && b.second < to)
            .collect();
        let scheduled: u64 = window.iter().map(|b| b.scheduled).sum();
        let available: u64 = window.iter().map(|b| b.available).sum();
        record.scheduled_in_window = scheduled;
        record.availability_in_window =
            (scheduled > 0).then(|| available as f64 / scheduled as f64);
        let next_fault = starts.iter().copied().filter(|s| *s >= to).min();
        let before_next: Vec<&SecondBucket> = timeline
            .iter()
            .filter(|b| b.second >= to && next_fault.is_none_or(|n| b.second < n))
            .collect();
        record.recovery_s = (0..before_next.len())
            .find(|&k| {
                let run = &before_next[k..(k + RECOVERED_FOR).min(before_next.len())];
                run.iter().all(|b| recovered(b))
            })
            .map(|k| before_next[k].second - to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(second: u64, scheduled: u64, available: u64) -> SecondBucket {
        SecondBucket {
            second,
            scheduled,
            available,
            ..SecondBucket::default()
        }
    }

    fn record(at_s: u64, ends_at_s: u64, applied: f64, healed: f64) -> FaultRecord {
        FaultRecord {
            at_s,
            ends_at_s,
            applies: true,
            applied_s: Some(applied),
            healed_s: Some(healed),
            ..FaultRecord::default()
        }
    }

    #[test]
    fn windows_follow_the_real_heal_and_recovery_needs_three_good_seconds_before_the_next_fault() {
        // 10 orders a second; a fault scheduled 2–4 s whose heal really came at 5.5 s, then
        // one bad second after it, three good ones, and a second fault at 12 s.
        let availability = [10, 10, 0, 0, 0, 0, 5, 10, 10, 10, 10, 10, 0, 10, 10, 10];
        let timeline: Vec<SecondBucket> = availability
            .iter()
            .enumerate()
            .map(|(s, a)| second(s as u64, 10, *a))
            .collect();
        let mut records = vec![record(2, 4, 2.0004, 5.5), record(12, 13, 12.0, 13.02)];
        score(&mut records, &timeline);
        let first = &records[0];
        assert_eq!(first.scheduled_in_window, 40, "seconds 2, 3, 4 and 5");
        assert_eq!(first.availability_in_window, Some(0.0));
        assert_eq!(
            first.recovery_s,
            Some(1),
            "from 6 s: 6 is half available, 7–9 are good"
        );
        let second_fault = &records[1];
        assert_eq!(
            second_fault.scheduled_in_window, 10,
            "a heal 20 ms past 13 s counts from 13"
        );
        assert_eq!(second_fault.recovery_s, Some(0));

        // Not recovered before the next fault starts: none.
        let mut records = vec![record(2, 4, 2.0, 4.0), record(6, 7, 6.0, 7.0)];
        let mut bad = timeline.clone();
        bad[4].available = 9;
        bad[5].available = 9;
        score(&mut records, &bad);
        assert_eq!(records[0].recovery_s, None);
    }
}
