//! Past its admission limit the coordinator turns orders away at once, untouched, instead of
//! letting every transaction time out in Prepare (which aborted nearly all of them under
//! overload before the limit existed).

use crate::support::{kind, small_data_set, start};
use common::api::pb::OutcomeKind;
use futures::future::join_all;
use std::sync::Arc;
use std::time::Duration;

const ADMITTED_AT_ONCE: u32 = 2;
const BURST: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_admission_limit_is_shed_untouched_and_the_rest_commits() {
    // Every Commit takes a second at each participant, so each admitted transaction holds its
    // slot for at least that long; with a 1 s deadline and a 500 ms prepare timeout an order
    // may wait 500 ms for a slot. A burst of 24 therefore cannot all be admitted in time.
    let lab = Arc::new(
        start("twopc_overload", small_data_set(31), |c| {
            c.max_in_flight = ADMITTED_AT_ONCE;
            c.env.push((
                common::failpoint::ENV_VAR.into(),
                format!("{}=sleep(1000)", twopc::participant::service::BEFORE_COMMIT),
            ));
        })
        .await,
    );
    let orders: Vec<_> = (0..BURST)
        .map(|i| lab.order(i as i32 + 1, &[(i as i32 % 20 + 1, 1)]))
        .collect();
    let before: Vec<i64> = join_all(orders.iter().map(|o| lab.balance(o.customer.0))).await;
    let outcomes = join_all(orders.iter().map(|o| lab.place(o, 1000))).await;

    let shed: Vec<usize> = (0..BURST)
        .filter(|&i| kind(&outcomes[i]) == OutcomeKind::Aborted)
        .collect();
    let committed = (0..BURST)
        .filter(|&i| kind(&outcomes[i]) == OutcomeKind::Committed)
        .count();
    println!(
        "burst of {BURST} with {ADMITTED_AT_ONCE} admitted at once: {committed} committed, {} shed",
        shed.len()
    );
    assert_eq!(
        committed + shed.len(),
        BURST,
        "only COMMITTED and ABORTED expected: {outcomes:?}"
    );
    assert!(committed >= 1, "admitted orders commit: {outcomes:?}");
    assert!(
        !shed.is_empty(),
        "the burst must be shed in part: {outcomes:?}"
    );
    for &i in &shed {
        assert!(
            outcomes[i].reason.starts_with("overloaded"),
            "a shed order says why: {:?}",
            outcomes[i]
        );
    }

    let report = lab.wait_quiescent_and_clean(Duration::from_secs(30)).await;
    assert_eq!(report.counts.orders_confirmed, committed as u64);
    assert!(lab.prepared().await.is_empty());
    // A shed order touched nothing: its customer was not charged.
    for &i in &shed {
        assert_eq!(lab.balance(orders[i].customer.0).await, before[i]);
    }
}
