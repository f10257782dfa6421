//! Closed-loop load: N clients, each placing its next order as soon as the previous one is
//! answered. Latency is measured per outcome in HdrHistograms, one recorder per worker, merged.

use crate::workload::{OrderGenerator, WorkloadSpec};
use common::api::pb::PlaceOrderRequest;
use common::api::OrderApiClient;
use common::datagen::DataSet;
use common::domain::OutcomeKind;
use common::metrics::{new_histogram, record};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ClosedLoop {
    pub clients: usize,
    pub orders: usize,
    /// Distinguishes the order streams of successive loads (warm-up, measurement) on one data
    /// set, so that no two loads generate the same order ids.
    pub stream_base: u64,
    /// The deadline each request carries.
    pub deadline: Duration,
}

/// What the clients saw.
#[derive(Debug)]
pub struct LoadResult {
    /// Latency (µs) of measured orders, by outcome.
    pub latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    /// Requests that got no Outcome at all (transport errors, refusals), by message kind.
    pub errors: BTreeMap<String, u64>,
    /// From the first order's start to the last answer.
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn count(&self, kind: OutcomeKind) -> u64 {
        self.latency.get(&kind).map_or(0, |h| h.len())
    }

    pub fn all(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in self.latency.values() {
            all.add(h).expect("same bounds");
        }
        all
    }
}

struct Worker {
    latency: BTreeMap<OutcomeKind, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
}

pub async fn run(
    url: &str,
    data: &DataSet,
    workload: &WorkloadSpec,
    load: &ClosedLoop,
) -> Result<LoadResult, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("the lab's own URL")
        .tcp_nodelay(true)
        .connect()
        .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let total = load.orders;
    let started_at = Instant::now();
    let progress = tokio::spawn(report_progress(next.clone(), total));
    let mut tasks = Vec::new();
    for index in 0..load.clients {
        let client = OrderApiClient::new(channel.clone());
        let mut orders = OrderGenerator::new(workload, data, load.stream_base + index as u64);
        let (next, load) = (next.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut worker = Worker {
                latency: BTreeMap::new(),
                errors: BTreeMap::new(),
            };
            let mut client = client;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return worker;
                }
                let mut request = PlaceOrderRequest::from(&orders.next_order());
                request.deadline_ms = load.deadline.as_millis() as u32;
                let started = Instant::now();
                match client.place_order(request).await {
                    Ok(outcome) => {
                        let kind = match outcome.into_inner().kind() {
                            common::api::pb::OutcomeKind::Committed => OutcomeKind::Committed,
                            common::api::pb::OutcomeKind::Rejected => OutcomeKind::Rejected,
                            common::api::pb::OutcomeKind::Aborted => OutcomeKind::Aborted,
                            _ => OutcomeKind::Undecided,
                        };
                        record(
                            worker.latency.entry(kind).or_insert_with(new_histogram),
                            started.elapsed(),
                        );
                    }
                    Err(status) => {
                        *worker
                            .errors
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1
                    }
                }
            }
        }));
    }
    let mut result = LoadResult {
        latency: BTreeMap::new(),
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let worker = task.await.expect("workers do not panic");
        for (kind, h) in worker.latency {
            result
                .latency
                .entry(kind)
                .or_insert_with(new_histogram)
                .add(&h)
                .expect("same bounds");
        }
        for (kind, n) in worker.errors {
            *result.errors.entry(kind).or_default() += n;
        }
    }
    result.elapsed = started_at.elapsed();
    progress.abort();
    Ok(result)
}

/// One line a second on stderr: orders done and the current rate.
async fn report_progress(next: Arc<AtomicUsize>, total: usize) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = next.load(Ordering::Relaxed).min(total);
        eprintln!("  {done}/{total} orders, {}/s", done - last);
        last = done;
    }
}
