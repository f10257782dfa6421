//! Past its admission limit a saga front turns orders away at once, untouched, as 2PC's
//! coordinator does, instead of starting sagas that would all outlive their clients' deadlines.
//! A started saga keeps its slot until it is final, even after its client gave up.

use super::deployment;
use super::harness::{request, Role, Start};
use super::workload::{self, kind_of};
use common::domain::OutcomeKind;
use futures::future::join_all;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use saga::Mode;
use std::time::Duration;

const ADMITTED_AT_ONCE: usize = 2;
const BURST: usize = 24;
const DEADLINE_MS: u32 = 3_000;
const RESERVE_MS: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrated_front_sheds_a_burst_past_its_limit_untouched() {
    burst_past_the_limit(Mode::Orchestrated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choreographed_front_sheds_a_burst_past_its_limit_untouched() {
    burst_past_the_limit(Mode::Choreographed).await;
}

async fn burst_past_the_limit(mode: Mode) {
    let name = match mode {
        Mode::Orchestrated => "overload_orch",
        Mode::Choreographed => "overload_choreo",
    };
    let mut lab = deployment(name, mode).await;
    for role in lab.roles() {
        let start = if role == lab.front() {
            Start {
                args: vec![
                    "--max-in-flight".into(),
                    ADMITTED_AT_ONCE.to_string(),
                    "--admission-reserve-ms".into(),
                    RESERVE_MS.to_string(),
                ],
                ..Start::default()
            }
        } else if role == Role::Payment {
            // Every message the payment service handles takes a second more, so each saga
            // holds its slot for at least that long and few slots come free in a burst's wait.
            Start {
                failpoints: Some("consumer-before-offset-store=sleep(1000)".into()),
                ..Start::default()
            }
        } else {
            Start::default()
        };
        lab.start(role, start).await;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let orders: Vec<_> = (0..BURST)
        .map(|_| workload::ordinary(&lab.data, &mut rng))
        .collect();
    let client = lab.client().await;
    let outcomes: Vec<_> = join_all(orders.iter().map(|order| {
        let mut client = client.clone();
        async move {
            client
                .place_order(request(order, DEADLINE_MS))
                .await
                .expect("the front answers")
                .into_inner()
        }
    }))
    .await;

    let shed: Vec<usize> = (0..BURST)
        .filter(|&i| kind_of(&outcomes[i]) == OutcomeKind::Aborted)
        .collect();
    let admitted: Vec<usize> = (0..BURST).filter(|i| !shed.contains(i)).collect();
    println!(
        "{name}: burst of {BURST}, {ADMITTED_AT_ONCE} in flight at most: {} admitted, {} shed",
        admitted.len(),
        shed.len()
    );
    assert!(
        !shed.is_empty(),
        "the burst must be shed in part: {outcomes:?}"
    );
    assert!(
        admitted.len() >= ADMITTED_AT_ONCE,
        "the first orders are admitted: {outcomes:?}"
    );
    for &i in &shed {
        assert!(
            outcomes[i].reason.starts_with("overloaded"),
            "a shed order says why: {:?}",
            outcomes[i]
        );
        assert_eq!(
            outcomes[i].accepted_unix_us, 0,
            "a shed order was never accepted"
        );
    }
    for &i in &admitted {
        let kind = kind_of(&outcomes[i]);
        assert!(
            matches!(kind, OutcomeKind::Committed | OutcomeKind::Undecided),
            "an admitted ordinary order commits (or outlives its client): {:?}",
            outcomes[i]
        );
    }
    let (_, counters) = lab.metrics(lab.front()).await;
    assert_eq!(
        counters.get(common::admission::SHED).copied(),
        Some(shed.len() as u64),
        "{counters:?}"
    );

    lab.wait_quiescent(Duration::from_secs(60)).await;
    for (i, order) in orders.iter().enumerate() {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
            .bind(order.id.0)
            .fetch_optional(&lab.dbs.orders)
            .await
            .unwrap();
        if shed.contains(&i) {
            assert_eq!(status, None, "a shed order wrote nothing");
        } else {
            assert_eq!(
                status.as_deref(),
                Some("CONFIRMED"),
                "order {i} ends confirmed"
            );
        }
    }
    let charged: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&lab.dbs.payments)
        .await
        .unwrap();
    assert_eq!(
        charged as usize,
        admitted.len(),
        "only admitted orders were charged"
    );
}
