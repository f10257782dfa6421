//! A scenario's fault schedule: what happens to which role, when, for how long. Roles, not
//! processes or ports, so one schedule means the same thing under every protocol (DESIGN §5):
//! "payment partitioned" cuts coordinator↔payment under 2PC and payment↔broker under sagas.

use serde::{Deserialize, Serialize};

/// A part of the system, named the same way under every protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The load generator's link to the front service (the client API).
    Client,
    /// The process that drives the transaction: the 2PC coordinator, the saga orchestrator.
    /// Choreography has none, so faults on it do not apply there (and the report says so).
    Coordinator,
    Order,
    Payment,
    Inventory,
    /// The Kafka broker: sagas only; under 2PC faults on it do not apply.
    Broker,
    /// A service's own PostgreSQL: its link from the service (partition, delay, reset) or,
    /// under the replicated topology where each owner has its own cluster, its postmaster
    /// (crash). `coordinator_db` is the 2PC decision log or the orchestrator's saga log.
    OrderDb,
    PaymentDb,
    InventoryDb,
    CoordinatorDb,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Coordinator => "coordinator",
            Role::Order => "order",
            Role::Payment => "payment",
            Role::Inventory => "inventory",
            Role::Broker => "broker",
            Role::OrderDb => "order_db",
            Role::PaymentDb => "payment_db",
            Role::InventoryDb => "inventory_db",
            Role::CoordinatorDb => "coordinator_db",
        }
    }

    /// For a database role, the role of the service that owns the database.
    pub fn owner(self) -> Option<Role> {
        match self {
            Role::OrderDb => Some(Role::Order),
            Role::PaymentDb => Some(Role::Payment),
            Role::InventoryDb => Some(Role::Inventory),
            Role::CoordinatorDb => Some(Role::Coordinator),
            _ => None,
        }
    }

    /// The database role of a service that owns one.
    pub fn database(self) -> Option<Role> {
        match self {
            Role::Order => Some(Role::OrderDb),
            Role::Payment => Some(Role::PaymentDb),
            Role::Inventory => Some(Role::InventoryDb),
            Role::Coordinator => Some(Role::CoordinatorDb),
            _ => None,
        }
    }
}

/// What a fault does to its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Every link of the role goes silent (bytes held, connections left open, no RST).
    Partition,
    /// Every link of the role adds `latency_ms` plus up to `jitter_ms` each way.
    Delay,
    /// Every connection of the role's links is reset, and new ones too: fast failure.
    Reset,
    /// SIGKILL the role's process; restart it when the window ends.
    Crash,
    /// SIGSTOP the role's process, SIGCONT when the window ends: a stalled process whose
    /// sockets stay open (a long GC pause, a frozen VM) — how a 2PC coordinator blocks.
    Pause,
    /// Every link of the role's process at once, its client link included when it is the
    /// front door: the process is cut off from everything, as on a partitioned host.
    Isolate,
    /// The offered rate multiplied by `factor` (the client's role only): a traffic spike.
    Surge,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Reset => "reset",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Isolate => "isolate",
            FaultKind::Surge => "surge",
        }
    }

    /// Whether the fault switches proxies on links.
    pub fn on_links(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::Delay | FaultKind::Reset | FaultKind::Isolate
        )
    }
}

/// One `[[faults]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub target: Role,
    /// Seconds after the measured load starts.
    pub at_s: u64,
    /// How long the fault lasts; a crashed process restarts when it ends.
    pub duration_s: u64,
    /// `delay` only: added latency each way.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// `delay` only: up to this much more, uniformly at random (order kept).
    #[serde(default)]
    pub jitter_ms: Option<u64>,
    /// `surge` only: the offered rate is multiplied by this during the window.
    #[serde(default)]
    pub factor: Option<f64>,
}

impl FaultSpec {
    pub fn ends_at_s(&self) -> u64 {
        self.at_s + self.duration_s
    }

    /// "delay inventory +25 ms", "surge client ×3": what the fault does, without its window
    /// (plots place the window themselves).
    pub fn what(&self) -> String {
        let extra = match (self.kind, self.latency_ms, self.factor) {
            (FaultKind::Delay, Some(ms), _) => match self.jitter_ms {
                Some(j) if j > 0 => format!(" +{ms} ms (+0–{j} jitter)"),
                _ => format!(" +{ms} ms"),
            },
            (FaultKind::Surge, _, Some(f)) => format!(" ×{f}"),
            _ => String::new(),
        };
        format!("{} {}{extra}", self.kind.as_str(), self.target.as_str())
    }

    /// "partition payment 10–15 s" and the like, for logs and reports.
    pub fn label(&self) -> String {
        format!("{} {}–{} s", self.what(), self.at_s, self.ends_at_s())
    }
}

/// Checks the schedule against a measured load of `duration_s`; `Err((field, reason))` names the
/// entry (`faults[2].latency_ms`).
pub fn validate(faults: &[FaultSpec], duration_s: u64) -> Result<(), (String, String)> {
    for (i, fault) in faults.iter().enumerate() {
        let field = |name: &str| format!("faults[{i}].{name}");
        if fault.duration_s == 0 {
            return Err((field("duration_s"), "must be at least 1".into()));
        }
        if fault.ends_at_s() > duration_s {
            return Err((
                field("duration_s"),
                format!(
                    "the fault ends at {} s, after the measured load (load.duration_s = {duration_s}); \
                     leave time after it to see the recovery",
                    fault.ends_at_s()
                ),
            ));
        }
        match fault.kind {
            FaultKind::Delay => match fault.latency_ms {
                None => return Err((field("latency_ms"), "a delay needs latency_ms".into())),
                Some(ms) if ms == 0 || ms > 60_000 => {
                    return Err((field("latency_ms"), format!("must be 1..=60000, got {ms}")))
                }
                Some(_) => {}
            },
            _ => {
                if fault.latency_ms.is_some() {
                    return Err((field("latency_ms"), "only a delay has a latency".into()));
                }
                if fault.jitter_ms.is_some() {
                    return Err((field("jitter_ms"), "only a delay has a jitter".into()));
                }
            }
        }
        match (fault.kind, fault.factor) {
            (FaultKind::Surge, None) => {
                return Err((field("factor"), "a surge needs factor (e.g. 3.0)".into()))
            }
            (FaultKind::Surge, Some(f)) if !(f > 1.0 && f <= 100.0) => {
                return Err((field("factor"), format!("must be in (1, 100], got {f}")))
            }
            (FaultKind::Surge, Some(_)) => {}
            (_, Some(_)) => return Err((field("factor"), "only a surge has a factor".into())),
            (_, None) => {}
        }
        if fault.kind == FaultKind::Surge && fault.target != Role::Client {
            return Err((
                field("target"),
                "a surge acts on the offered load: its target is \"client\"".into(),
            ));
        }
        if fault.jitter_ms.is_some_and(|j| j > 60_000) {
            return Err((field("jitter_ms"), "must be at most 60000".into()));
        }
        if matches!(
            fault.kind,
            FaultKind::Crash | FaultKind::Pause | FaultKind::Isolate
        ) && fault.target == Role::Client
        {
            return Err((
                field("target"),
                format!(
                    "the client is the load generator itself; {} a service, the coordinator or the broker",
                    fault.kind.as_str()
                ),
            ));
        }
        if fault.target.owner().is_some()
            && matches!(fault.kind, FaultKind::Pause | FaultKind::Isolate)
        {
            return Err((
                field("kind"),
                format!(
                    "a database ({}) can be crashed, or its link partitioned, delayed or reset; not {}",
                    fault.target.as_str(),
                    fault.kind.as_str()
                ),
            ));
        }
        for (j, other) in faults[..i].iter().enumerate() {
            let overlaps = fault.at_s < other.ends_at_s() && other.at_s < fault.ends_at_s();
            let surge = |f: &FaultSpec| f.kind == FaultKind::Surge;
            if overlaps && other.target == fault.target && surge(fault) == surge(other) {
                return Err((
                    field("at_s"),
                    format!(
                        "overlaps faults[{j}] on the same target ({}); one fault per target at a time",
                        fault.target.as_str()
                    ),
                ));
            }
            // `coordinator` and `broker` name links the services' roles name too (2PC:
            // coordinator↔payment is payment's link; sagas: payment↔broker), so two link faults
            // on them at once would overwrite each other on a shared link.
            // An isolate cuts the client link too when its target is the front door.
            let on_links = |f: &FaultSpec| f.kind.on_links();
            let shares_links = |r: Role| matches!(r, Role::Coordinator | Role::Broker);
            let on_client = |f: &FaultSpec| f.target == Role::Client;
            let isolate = |f: &FaultSpec| f.kind == FaultKind::Isolate;
            let services_share = !on_client(fault)
                && !on_client(other)
                && (shares_links(fault.target) || shares_links(other.target));
            let client_shared = (isolate(fault) && on_client(other) && on_links(other))
                || (isolate(other) && on_client(fault) && on_links(fault));
            if overlaps && on_links(fault) && on_links(other) && (services_share || client_shared) {
                return Err((
                    field("at_s"),
                    format!(
                        "overlaps faults[{j}] ({}), which acts on links {} shares; one link fault per link at a time",
                        other.label(),
                        fault.target.as_str()
                    ),
                ));
            }
        }
    }
    Ok(())
}
