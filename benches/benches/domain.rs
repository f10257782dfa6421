//! The cost of the domain work every order pays before any protocol runs: validating an order and
//! generating the seeded data set a run starts from.

use common::datagen::{DataSet, DataSetSpec};
use common::domain::{Cents, CustomerId, Order, OrderId, OrderLine, Sku};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn validate_order(c: &mut Criterion) {
    let lines: Vec<OrderLine> = (1..=4)
        .map(|i| OrderLine {
            sku: Sku(i * 7),
            qty: i,
            unit_price: Cents(199 * i64::from(i)),
        })
        .collect();
    let id = OrderId::new_random();
    c.bench_function("order_validate_4_lines", |b| {
        b.iter(|| Order::new(black_box(id), CustomerId(1), black_box(lines.clone())).unwrap())
    });
}

fn generate_data_set(c: &mut Criterion) {
    let spec = DataSetSpec {
        customers: 10_000,
        skus: 1_000,
        ..DataSetSpec::default()
    };
    c.bench_function("dataset_generate_10k_customers_1k_skus", |b| {
        b.iter(|| DataSet::generate(black_box(&spec)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = txlab_benches::budget();
    targets = validate_order, generate_data_set
}
criterion_main!(benches);
