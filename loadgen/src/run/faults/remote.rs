//! Faults in a deployment the lab does not own (DESIGN §5 on real infrastructure): link faults
//! through the deployment's Toxiproxy, one proxy per link named in the deployment file, and
//! crash and pause through the file's command templates per role (`docker kill …`,
//! `systemctl …`, `kill -STOP …`). A role crashed without a crash command has its proxies
//! disabled instead (`enabled = false`): its peers see it down.

use super::schedule::{FaultKind, FaultSpec, Role};
use super::toxiproxy::{Toxic, Toxiproxy, ToxiproxyError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The deployment file's `[faults]`: where its Toxiproxy answers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    /// Toxiproxy's HTTP API, `http://[user:password@]host:port`.
    pub toxiproxy: String,
}

/// One Toxiproxy proxy on a protocol's link, and the roles at its two ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The proxy's name on the Toxiproxy server.
    pub proxy: String,
    pub ends: [Role; 2],
}

/// How to crash and pause one role's process; each action comes with its undo.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleCommands {
    pub crash: Option<String>,
    pub restart: Option<String>,
    pub pause: Option<String>,
    pub resume: Option<String>,
}

impl RoleCommands {
    /// `Err(reason)` when an action lacks its undo (or an undo its action).
    pub fn check(&self) -> Result<(), String> {
        match ((&self.crash, &self.restart), (&self.pause, &self.resume)) {
            ((Some(_), None), _) => Err("crash needs restart, to end the fault".into()),
            ((None, Some(_)), _) => Err("restart without crash".into()),
            (_, (Some(_), None)) => Err("pause needs resume, to end the fault".into()),
            (_, (None, Some(_))) => Err("resume without pause".into()),
            _ => Ok(()),
        }
    }
}

/// How long one command template may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One protocol's fault backend in a deployment.
pub struct RemoteFaults {
    api: Toxiproxy,
    links: Vec<LinkSpec>,
    commands: BTreeMap<Role, RoleCommands>,
    /// The role whose process is the client's front door (an isolate cuts the client too).
    front: Role,
}

impl RemoteFaults {
    pub fn new(
        section: &FaultsSection,
        links: &[LinkSpec],
        commands: &BTreeMap<Role, RoleCommands>,
        front: Role,
    ) -> Result<RemoteFaults, ToxiproxyError> {
        Ok(RemoteFaults {
            api: Toxiproxy::new(&section.toxiproxy)?,
            links: links.to_vec(),
            commands: commands.clone(),
            front,
        })
    }

    /// Every proxy enabled and free of the lab's toxics, in case an earlier run was cut short.
    pub async fn clear(&self) -> Result<(), ToxiproxyError> {
        for link in &self.links {
            self.api.set_enabled(&link.proxy, true).await?;
            for toxic in [
                Toxic::Partition,
                Toxic::ResetPeer,
                Toxic::Latency {
                    latency_ms: 0,
                    jitter_ms: 0,
                },
            ] {
                match self.api.remove_toxic(&link.proxy, toxic.name()).await {
                    Err(e) if e.status() != Some(404) => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The proxies a fault on `role` acts on; an isolate of the front includes the client's.
    /// As in the local environment, a link to a database is acted on only by a fault on that
    /// database, not by one on its service.
    fn proxies_of(&self, role: Role, isolate: bool) -> Vec<&str> {
        let cut_client = isolate && role == self.front;
        let to_database = |l: &LinkSpec| l.ends.iter().any(|r| r.owner().is_some());
        self.links
            .iter()
            .filter(|l| {
                let touches =
                    l.ends.contains(&role) || (cut_client && l.ends.contains(&Role::Client));
                touches && (role.owner().is_some() || !to_database(l))
            })
            .map(|l| l.proxy.as_str())
            .collect()
    }

    /// Applies `fault`; returns whether it applies here and what was done.
    pub async fn start(&self, fault: &FaultSpec) -> Result<(bool, String), String> {
        let role = fault.target;
        let commands = self.commands.get(&role);
        match fault.kind {
            FaultKind::Surge => Ok((
                true,
                format!("offered rate ×{}", fault.factor.unwrap_or(1.0)),
            )),
            FaultKind::Crash => match commands.and_then(|c| c.crash.as_deref()) {
                Some(command) => run(command).await.map(|done| (true, done)),
                None => self.set_enabled(role, false).await,
            },
            FaultKind::Pause => match commands.and_then(|c| c.pause.as_deref()) {
                Some(command) => run(command).await.map(|done| (true, done)),
                None => Ok((false, format!("no pause command for {}", role.as_str()))),
            },
            FaultKind::Partition | FaultKind::Delay | FaultKind::Reset | FaultKind::Isolate => {
                let toxic = toxic_of(fault);
                let proxies = self.proxies_of(role, fault.kind == FaultKind::Isolate);
                if proxies.is_empty() {
                    return Ok((false, format!("no link of {} in the file", role.as_str())));
                }
                for proxy in &proxies {
                    self.api
                        .add_toxic(proxy, toxic)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok((
                    true,
                    format!("toxiproxy {} on {}", toxic.name(), proxies.join(", ")),
                ))
            }
        }
    }

    /// Ends `fault` (which applied): the undo command, or the toxics removed, proxies enabled.
    pub async fn heal(&self, fault: &FaultSpec) -> Result<(), String> {
        let role = fault.target;
        let commands = self.commands.get(&role);
        match fault.kind {
            FaultKind::Surge => Ok(()),
            FaultKind::Crash => match commands.and_then(|c| c.restart.as_deref()) {
                Some(command) => run(command).await.map(|_| ()),
                None => self.set_enabled(role, true).await.map(|_| ()),
            },
            FaultKind::Pause => match commands.and_then(|c| c.resume.as_deref()) {
                Some(command) => run(command).await.map(|_| ()),
                None => Ok(()),
            },
            FaultKind::Partition | FaultKind::Delay | FaultKind::Reset | FaultKind::Isolate => {
                let name = toxic_of(fault).name();
                let mut first_error = None;
                for proxy in self.proxies_of(role, fault.kind == FaultKind::Isolate) {
                    if let Err(e) = self.api.remove_toxic(proxy, name).await {
                        first_error.get_or_insert(e.to_string());
                    }
                }
                first_error.map_or(Ok(()), Err)
            }
        }
    }

    /// Every proxy of `role`'s links disabled (down) or enabled again.
    async fn set_enabled(&self, role: Role, enabled: bool) -> Result<(bool, String), String> {
        let proxies = self.proxies_of(role, false);
        if proxies.is_empty() {
            return Ok((
                false,
                format!(
                    "no crash command and no link of {} in the file",
                    role.as_str()
                ),
            ));
        }
        for proxy in &proxies {
            self.api
                .set_enabled(proxy, enabled)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok((
            true,
            format!(
                "toxiproxy: {} disabled (no crash command)",
                proxies.join(", ")
            ),
        ))
    }
}

fn toxic_of(fault: &FaultSpec) -> Toxic {
    match fault.kind {
        FaultKind::Delay => Toxic::Latency {
            latency_ms: fault.latency_ms.unwrap_or(0) as u32,
            jitter_ms: fault.jitter_ms.unwrap_or(0) as u32,
        },
        FaultKind::Reset => Toxic::ResetPeer,
        _ => Toxic::Partition,
    }
}

/// Runs a command template with `sh -c`; its output goes to the lab's log. `Err` names the
/// command and how it ended.
async fn run(command: &str) -> Result<String, String> {
    let child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Ok(Ok(out)) if out.status.success() => Ok(format!("ran `{command}`")),
        Ok(Ok(out)) => Err(format!(
            "`{command}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("`{command}` did not start: {e}")),
        Err(_) => Err(format!(
            "`{command}` did not finish within {COMMAND_TIMEOUT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_needs_its_undo() {
        let crash_only = RoleCommands {
            crash: Some("docker kill x".into()),
            ..RoleCommands::default()
        };
        assert!(crash_only.check().unwrap_err().contains("restart"));
        let pause = RoleCommands {
            pause: Some("kill -STOP 1".into()),
            resume: Some("kill -CONT 1".into()),
            ..RoleCommands::default()
        };
        assert!(pause.check().is_ok());
    }

    #[test]
    fn a_service_fault_leaves_its_database_link_alone() {
        let link = |proxy: &str, a: Role, b: Role| LinkSpec {
            proxy: proxy.into(),
            ends: [a, b],
        };
        let remote = RemoteFaults {
            api: Toxiproxy::new("http://127.0.0.1:8474").unwrap(),
            links: vec![
                link("c_pay", Role::Coordinator, Role::Payment),
                link("pay_c", Role::Payment, Role::Coordinator),
                link("pay_db", Role::Payment, Role::PaymentDb),
                link("client", Role::Client, Role::Coordinator),
            ],
            commands: BTreeMap::new(),
            front: Role::Coordinator,
        };
        assert_eq!(remote.proxies_of(Role::Payment, false), ["c_pay", "pay_c"]);
        assert_eq!(remote.proxies_of(Role::PaymentDb, false), ["pay_db"]);
        assert_eq!(
            remote.proxies_of(Role::Coordinator, true),
            ["c_pay", "pay_c", "client"]
        );
    }

    #[tokio::test]
    async fn a_failing_command_is_an_error_naming_it() {
        let err = run("echo nope >&2; exit 3").await.unwrap_err();
        assert!(err.contains("exit 3") && err.contains("nope"), "{err}");
        assert_eq!(run("true").await.unwrap(), "ran `true`");
    }
}
