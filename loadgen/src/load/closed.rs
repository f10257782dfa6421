//! Closed-loop load: N clients, each placing its next order as soon as the previous one is
//! answered. Latency is measured per outcome in HdrHistograms, one recorder per worker, merged.

use crate::load::connections::Connections;
use crate::load::recorder::{outcome_kind, Answer, Recorded};
use crate::load::workload::{OrderGenerator, WorkloadSpec};
use common::api::pb::PlaceOrderRequest;
use common::api::OrderApiClient;
use common::datagen::DataSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ClosedLoop {
    pub clients: usize,
    /// Orders to place at most.
    pub orders: usize,
    /// Stop starting orders after this long, if set.
    pub duration: Option<Duration>,
    /// Distinguishes the order streams of successive loads (warm-up, measurement) on one data
    /// set, so that no two loads generate the same order ids.
    pub stream_base: u64,
    /// The deadline each request carries.
    pub deadline: Duration,
}

pub async fn run(
    connections: &Connections,
    data: &DataSet,
    workload: &WorkloadSpec,
    load: &ClosedLoop,
) -> Recorded {
    let next = Arc::new(AtomicUsize::new(0));
    let started_at = Instant::now();
    let begin_unix_us = common::api::unix_micros_now();
    let progress = tokio::spawn(report_progress(next.clone(), load.orders));
    let mut tasks = Vec::new();
    for index in 0..load.clients {
        let mut client = OrderApiClient::new(connections.next());
        let mut orders = OrderGenerator::new(workload, data, load.stream_base + index as u64);
        let (next, load) = (next.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Recorded::growing();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= load.orders || load.duration.is_some_and(|d| started_at.elapsed() >= d) {
                    return mine;
                }
                let order = orders.next_order();
                let mut request = PlaceOrderRequest::from(&order);
                request.deadline_ms = load.deadline.as_millis() as u32;
                let started = Instant::now();
                let second = (started - started_at).as_secs() as usize;
                mine.bucket(second).scheduled += 1;
                mine.started += 1;
                // A silent partition must not hang the run: give up as the open loop does.
                let give_up = load.deadline + crate::load::open::GIVE_UP_AFTER_DEADLINE;
                let answer = match tokio::time::timeout(give_up, client.place_order(request)).await
                {
                    Ok(answer) => answer.map_err(|status| format!("{:?}", status.code())),
                    Err(_) => Err("ClientTimeout".to_string()),
                };
                let outcome = answer.map(|reply| outcome_kind(reply.into_inner().kind()));
                mine.answer(
                    Answer {
                        order_id: order.id,
                        start_offset: started - started_at,
                        latency: started.elapsed(),
                        accepted_after: None,
                        outcome,
                    },
                    load.deadline,
                );
            }
        }));
    }
    let mut result = Recorded::growing();
    result.intervals.begin_unix_us = begin_unix_us;
    for task in tasks {
        result.merge(task.await.expect("workers do not panic"));
    }
    result.elapsed = started_at.elapsed();
    result.start_span = result.elapsed;
    progress.abort();
    result
}

/// One line a second on stderr: orders done and the current rate.
async fn report_progress(next: Arc<AtomicUsize>, total: usize) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = next.load(Ordering::Relaxed).min(total);
        eprintln!("  {done} orders, {}/s", done - last);
        last = done;
    }
}
