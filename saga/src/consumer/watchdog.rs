//! Notices a consumer that stopped consuming while messages wait for it, so that the session can
//! be replaced by a fresh client.
//!
//! Why it exists: one earlier CI run reported, after a 2 s broker pause, a payment consumer that
//! was fenced from its group and never rejoined (KIP-848, librdkafka 2.12). Nothing is reported
//! to the application in such a case; the saga steps waiting on that topic simply never run. The
//! stalls replayed in this lab turned out to be a wedged relay producer (see `outbox::ACK_WAIT`),
//! so this guard has been seen to work only against its fail point, `consumer-stops-fetching`.
//! It is the same rule for every saga process, whatever the mode.
//!
//! The rule: the consumer received nothing for a whole [`STALL_WINDOW`], and over that window a
//! partition it should be reading stayed behind the partition's end without moving (counted from
//! the first look that saw it behind, so a consumer that was caught up and then stopped is caught
//! too), or the client stopped answering for its own state. Offsets the
//! process consumed are its own positions when it holds partitions, else the group's committed
//! offsets (a member without partitions while another member makes progress is not stalled).
//! When the broker cannot be asked, nothing is decided: an outage is not a stall.
//!
//! The broker is asked through the watchdog's own client (not a member of the group), never
//! through the consumer under watch: in one stuck case that consumer's coordinator connection
//! held a request unsent for 60 s, so every question put through it timed out and the stall
//! went unnoticed.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a consumer may receive nothing while a partition it reads is behind and unmoved.
pub const STALL_WINDOW: Duration = Duration::from_secs(10);
/// How often a quiet consumer is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(3);
/// Budget of each broker query made by a check.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Budget of a whole look. Each broker query is bounded and the first failure ends the look, so
/// only a client that does not report its own assignment and positions runs past it.
pub const LOOK_BUDGET: Duration = Duration::from_secs(20);

/// How far one partition has been consumed, against its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub consumed: i64,
    pub end: i64,
}

/// The partitions a consumer should be reading, at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// Whether the offsets are the process's own positions (it holds these partitions) or the
    /// group's committed offsets (it holds none).
    pub owned: bool,
    pub partitions: BTreeMap<(String, i32), Progress>,
}

/// A partition that did not move while messages waited on it.
#[derive(Debug, PartialEq, Eq)]
pub struct Stall {
    pub topic: String,
    pub partition: i32,
    pub consumed: i64,
    pub end: i64,
    pub owned: bool,
    pub for_: Duration,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}] stayed at offset {} of {} for {:.1} s ({})",
            self.topic,
            self.partition,
            self.consumed,
            self.end,
            self.for_.as_secs_f64(),
            if self.owned {
                "a partition this member holds"
            } else {
                "this member holds no partition; the group's committed offset"
            }
        )
    }
}

/// What the watchdog remembers between looks: since when each partition has been behind its end
/// at the same consumed offset.
#[derive(Debug, Default)]
pub struct Watch {
    behind: BTreeMap<(String, i32), (i64, bool, Instant)>,
}

impl Watch {
    /// Forgets everything (the consumer received a message: it is not stalled).
    pub fn reset(&mut self) {
        self.behind.clear();
    }

    /// Takes one look; a stall when a partition has been behind, unmoved and read the same way,
    /// for at least [`STALL_WINDOW`]. A partition counts from the first look that saw it behind,
    /// so one that was caught up and then stopped receiving is caught as well.
    pub fn observe(&mut self, now: &Snapshot) -> Option<Stall> {
        self.behind
            .retain(|key, _| now.partitions.contains_key(key));
        for (key, progress) in &now.partitions {
            if progress.consumed >= progress.end {
                self.behind.remove(key);
                continue;
            }
            let since = match self.behind.get(key) {
                Some(&(consumed, owned, since))
                    if consumed == progress.consumed && owned == now.owned =>
                {
                    since
                }
                _ => {
                    tracing::info!(topic = %key.0, partition = key.1, consumed = progress.consumed, end = progress.end, owned = now.owned, "the consumer is quiet while messages wait; watching");
                    self.behind
                        .insert(key.clone(), (progress.consumed, now.owned, now.at));
                    now.at
                }
            };
            let waited = now.at.saturating_duration_since(since);
            if waited >= STALL_WINDOW {
                return Some(Stall {
                    topic: key.0.clone(),
                    partition: key.1,
                    consumed: progress.consumed,
                    end: progress.end,
                    owned: now.owned,
                    for_: waited,
                });
            }
        }
        None
    }
}

/// The watchdog's own client: reads the group's committed offsets, metadata and watermarks; it
/// never subscribes, so it never joins the group.
pub fn probe_client(bootstrap: &str, group: &str) -> Result<BaseConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("socket.nagle.disable", "true")
        .create()
}

/// Reads the progress of `consumer` on `topics`: its assignment and positions from the client
/// itself (no broker round trip), the rest through `probe`. Blocking (broker queries): call it
/// from a blocking task. An error means the broker could not be asked.
pub fn snapshot(
    consumer: &StreamConsumer,
    probe: &BaseConsumer,
    topics: &[String],
) -> Result<Snapshot, KafkaError> {
    let at = Instant::now();
    let assignment = consumer.assignment()?;
    let owned = assignment.count() > 0;
    let (list, mut offsets) = if owned {
        let positions = consumer.position()?;
        let offsets = offsets_of(&positions);
        (assignment, offsets)
    } else {
        let mut list = TopicPartitionList::new();
        for topic in topics {
            let metadata = probe.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                list.add_partition(topic, partition.id());
            }
        }
        (list, BTreeMap::new())
    };
    // Partitions with no position yet (nothing consumed since assignment) start where the
    // group committed, and where the group never committed, at the log's start
    // (`auto.offset.reset=earliest`).
    let unknown: Vec<(String, i32)> = list
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .filter(|key| !offsets.contains_key(key))
        .collect();
    if !unknown.is_empty() {
        let mut query = TopicPartitionList::new();
        for (topic, partition) in &unknown {
            query.add_partition(topic, *partition);
        }
        offsets.extend(offsets_of(
            &consumer.committed_offsets(query, QUERY_TIMEOUT)?,
        ));
    }
    let mut partitions = BTreeMap::new();
    for element in list.elements() {
        let key = (element.topic().to_string(), element.partition());
        let (start, end) = probe.fetch_watermarks(&key.0, key.1, QUERY_TIMEOUT)?;
        let consumed = offsets.get(&key).copied().unwrap_or(start);
        partitions.insert(key, Progress { consumed, end });
    }
    Ok(Snapshot {
        at,
        owned,
        partitions,
    })
}

/// The concrete offsets of a list (logical ones such as "invalid" are left out).
fn offsets_of(list: &TopicPartitionList) -> BTreeMap<(String, i32), i64> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: Instant, owned: bool, parts: &[(i32, i64, i64)]) -> Snapshot {
        Snapshot {
            at,
            owned,
            partitions: parts
                .iter()
                .map(|&(p, consumed, end)| (("t".to_string(), p), Progress { consumed, end }))
                .collect(),
        }
    }

    /// One look: whether the partitions are owned, and (partition, consumed, end) of each.
    type Look<'a> = (bool, &'a [(i32, i64, i64)]);

    /// Looks every 3 s at the given snapshots; the first stall found, with its look's index.
    fn watch(looks: &[Look]) -> Option<(usize, Stall)> {
        let t0 = Instant::now();
        let mut watch = Watch::default();
        looks.iter().enumerate().find_map(|(i, (owned, parts))| {
            let at = t0 + Duration::from_secs(3 * i as u64);
            watch.observe(&snap(at, *owned, parts)).map(|s| (i, s))
        })
    }

    #[test]
    fn a_partition_behind_and_unmoved_for_the_window_is_a_stall() {
        let (look, stall) = watch(&[
            (true, &[(0, 5, 5), (1, 7, 9)]),
            (true, &[(0, 5, 6), (1, 7, 10)]),
            (true, &[(0, 5, 6), (1, 7, 11)]),
            (true, &[(0, 5, 6), (1, 7, 12)]),
            (true, &[(0, 5, 6), (1, 7, 12)]),
        ])
        .expect("partition 1 is stuck");
        assert_eq!(look, 4, "10 s after it was first seen behind");
        assert_eq!((stall.partition, stall.consumed, stall.end), (1, 7, 12));
        assert!(stall.owned);
    }

    #[test]
    fn caught_up_first_then_stuck_is_still_caught() {
        // The first look saw nothing waiting; then messages arrived and were never consumed.
        let looks: Vec<Look> = vec![
            (true, &[(0, 5, 5)]),
            (true, &[(0, 5, 8)]),
            (true, &[(0, 5, 9)]),
            (true, &[(0, 5, 9)]),
            (true, &[(0, 5, 9)]),
            (true, &[(0, 5, 9)]),
        ];
        let (look, _) = watch(&looks).expect("stuck after the first look");
        assert_eq!(look, 5);
    }

    #[test]
    fn caught_up_moving_or_read_differently_is_not() {
        let quiet: Vec<Look> = vec![(true, &[(0, 5, 5)]); 8];
        assert!(watch(&quiet).is_none(), "a quiet topic");
        let moving: Vec<Look> = (0..8)
            .map(|i| {
                (
                    false,
                    if i % 2 == 0 {
                        &[(0, 5, 9)][..]
                    } else {
                        &[(0, 6, 9)][..]
                    },
                )
            })
            .collect();
        assert!(watch(&moving).is_none(), "another member commits");
        let flipping: Vec<Look> = (0..8).map(|i| (i % 2 == 0, &[(0, 5, 9)][..])).collect();
        assert!(
            watch(&flipping).is_none(),
            "partitions gained and lost between looks"
        );
        let short: Vec<Look> = vec![(true, &[(0, 5, 9)]); 4];
        assert!(watch(&short).is_none(), "behind for 9 s only");
    }
}
