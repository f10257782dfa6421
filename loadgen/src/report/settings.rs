//! The report's settings section: what each process said it ran with (librdkafka's effective
//! client configuration with its defaults, the protocols' timeouts and limits, pool sizes), read
//! back from the processes themselves rather than from what the lab meant to set.

use crate::report::summary::Summary;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One row per protocol, setting and value, naming the processes that reported it; empty when
/// no process reported any setting (e.g. a deployment built before processes did).
pub(super) fn section(summary: &Summary) -> String {
    // protocol -> setting -> value -> processes
    let mut seen: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, Vec<&str>>>> = BTreeMap::new();
    for run in &summary.runs {
        let protocol = run.protocol.map_or("unknown", |p| p.name());
        for service in &run.services {
            let process = short_name(&service.service);
            for (name, value) in &service.settings {
                let holders = seen
                    .entry(protocol)
                    .or_default()
                    .entry(name)
                    .or_default()
                    .entry(value)
                    .or_default();
                if !holders.contains(&process) {
                    holders.push(process);
                }
            }
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    let mut md = String::new();
    let _ = writeln!(md, "\n## Settings as the processes reported them\n");
    let _ = writeln!(md, "Each process reports what it runs with at the end of the run: `kafka.*` is the librdkafka configuration each client was created with (as configured, librdkafka's defaults for the listed settings included), the rest the protocol's own knobs. A setting with two values names which process had which.\n");
    let _ = writeln!(md, "| protocol | setting | value | processes |");
    let _ = writeln!(md, "|---|---|---|---|");
    for (protocol, settings) in &seen {
        for (name, values) in settings {
            for (value, processes) in values {
                let _ = writeln!(
                    md,
                    "| {protocol} | `{name}` | `{value}` | {} |",
                    processes.join(", ")
                );
            }
        }
    }
    md
}

/// "saga-orchestrated/payment" -> "payment": the protocol is in its own column.
fn short_name(service: &str) -> &str {
    service.rsplit('/').next().unwrap_or(service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::{ProtocolRun, ServiceFigures};
    use crate::scenario::Protocol;

    fn service(name: &str, settings: &[(&str, &str)]) -> ServiceFigures {
        ServiceFigures {
            service: name.into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn one_row_per_value_naming_the_processes() {
        let run = ProtocolRun {
            protocol: Some(Protocol::SagaChoreographed),
            services: vec![
                service(
                    "saga-choreographed/order",
                    &[("kafka.producer.linger.ms", "0")],
                ),
                service(
                    "saga-choreographed/payment",
                    &[("kafka.producer.linger.ms", "0")],
                ),
                service(
                    "saga-choreographed/inventory",
                    &[("kafka.producer.linger.ms", "5")],
                ),
            ],
            ..Default::default()
        };
        let summary = Summary {
            runs: vec![run.clone(), run],
            ..Default::default()
        };
        let md = section(&summary);
        assert!(md.contains(
            "| saga-choreographed | `kafka.producer.linger.ms` | `0` | order, payment |"
        ));
        assert!(
            md.contains("| saga-choreographed | `kafka.producer.linger.ms` | `5` | inventory |")
        );
        assert_eq!(section(&Summary::default()), "");
    }
}
