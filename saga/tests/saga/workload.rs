//! Orders for the tests, from a seeded generator: ordinary ones that should commit, and ones made
//! to fail on purpose for funds (more than the wallet holds) or stock (more than the sku has).
// Shared by three test binaries (saga, broker_restart, measure); each uses only a part.
#![allow(dead_code)]

use super::harness::{request, Deployment};
use common::api::pb;
use common::datagen::DataSet;
use common::domain::{Cents, CustomerId, Order, OrderId, OrderLine, OutcomeKind};
use futures::stream::{self, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Intent {
    Commit,
    FailFunds,
    FailStock,
}

pub fn ordinary(data: &DataSet, rng: &mut ChaCha8Rng) -> Order {
    let customer = CustomerId(rng.gen_range(1..=data.wallets.len() as i32));
    let lines_wanted = rng.gen_range(1..=3);
    let mut lines: Vec<OrderLine> = Vec::new();
    while lines.len() < lines_wanted {
        let item = data.stock[rng.gen_range(0..data.stock.len())];
        if lines.iter().all(|l| l.sku != item.sku) {
            lines.push(OrderLine {
                sku: item.sku,
                qty: rng.gen_range(1..=3),
                unit_price: item.price,
            });
        }
    }
    Order::new(OrderId::new_random(), customer, lines).unwrap()
}

/// More than the customer's whole initial balance, of the dearest sku (few units, so stock holds).
pub fn fails_on_funds(data: &DataSet, rng: &mut ChaCha8Rng) -> Order {
    let wallet = data.wallets[rng.gen_range(0..data.wallets.len())];
    let item = *data.stock.iter().max_by_key(|s| s.price).unwrap();
    let qty = (wallet.balance.0 / item.price.0 + 1) as i32;
    Order::new(
        OrderId::new_random(),
        wallet.customer,
        vec![OrderLine {
            sku: item.sku,
            qty,
            unit_price: item.price,
        }],
    )
    .unwrap()
}

/// One unit more than the sku ever had.
pub fn fails_on_stock(data: &DataSet, rng: &mut ChaCha8Rng) -> Order {
    let item = data.stock[rng.gen_range(0..data.stock.len())];
    let customer = CustomerId(rng.gen_range(1..=data.wallets.len() as i32));
    let line = OrderLine {
        sku: item.sku,
        qty: item.available + 1,
        unit_price: Cents(item.price.0),
    };
    Order::new(OrderId::new_random(), customer, vec![line]).unwrap()
}

/// `n` orders, about 10 % failing for funds and 10 % for stock.
pub fn mixed(data: &DataSet, n: usize, seed: u64) -> Vec<(Intent, Order)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.gen_range(0..10) {
            0 => (Intent::FailFunds, fails_on_funds(data, &mut rng)),
            1 => (Intent::FailStock, fails_on_stock(data, &mut rng)),
            _ => (Intent::Commit, ordinary(data, &mut rng)),
        })
        .collect()
}

/// What a run saw at the client.
#[derive(Debug, Default)]
pub struct RunResult {
    /// (intent, outcome kind) → count; transport errors count as `None`.
    pub outcomes: BTreeMap<(Intent, Option<OutcomeKind>), usize>,
    pub elapsed: Duration,
    pub committed: usize,
}

impl RunResult {
    pub fn count(&self, intent: Intent, kind: Option<OutcomeKind>) -> usize {
        self.outcomes.get(&(intent, kind)).copied().unwrap_or(0)
    }
}

pub fn kind_of(outcome: &pb::Outcome) -> OutcomeKind {
    match pb::OutcomeKind::try_from(outcome.kind) {
        Ok(pb::OutcomeKind::Committed) => OutcomeKind::Committed,
        Ok(pb::OutcomeKind::Rejected) => OutcomeKind::Rejected,
        Ok(pb::OutcomeKind::Aborted) => OutcomeKind::Aborted,
        _ => OutcomeKind::Undecided,
    }
}

/// Places every order with `concurrency` in flight (closed loop), each with `deadline_ms`.
pub async fn run(
    deployment: &Deployment,
    orders: Vec<(Intent, Order)>,
    concurrency: usize,
    deadline_ms: u32,
) -> RunResult {
    let client = deployment.client().await;
    let started = Instant::now();
    let results: Vec<(Intent, Option<OutcomeKind>)> = stream::iter(orders)
        .map(|(intent, order)| {
            let mut client = client.clone();
            async move {
                let outcome = client.place_order(request(&order, deadline_ms)).await;
                (intent, outcome.ok().map(|o| kind_of(o.get_ref())))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut result = RunResult {
        elapsed: started.elapsed(),
        ..RunResult::default()
    };
    for key in results {
        if key.1 == Some(OutcomeKind::Committed) {
            result.committed += 1;
        }
        *result.outcomes.entry(key).or_default() += 1;
    }
    result
}
