//! The orders a run places: seeded, with customers and SKUs drawn from the data set (SKU
//! popularity optionally Zipf-skewed), 1..N lines per order at catalog prices. Like toydb's
//! workload, the same seed gives the same sequence of orders.

use common::datagen::DataSet;
use common::domain::{Cents, CustomerId, Order, OrderId, OrderLine, Sku};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub seed: u64,
    /// Lines per order, inclusive range.
    pub lines: (u32, u32),
    /// Units per line, inclusive range.
    pub qty: (u32, u32),
    /// Zipf exponent of SKU popularity: 0 is uniform, 1 makes the first SKUs hot.
    pub sku_skew: f64,
    /// Share of orders built to fail a business rule: half ask for more than the customer ever
    /// had, half for more units than any SKU ever held.
    pub failure_share: f64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            seed: 7,
            lines: (1, 3),
            qty: (1, 3),
            sku_skew: 0.0,
            failure_share: 0.0,
        }
    }
}

/// Draws orders. Each worker owns one (seeded from the run's seed and its index), so no lock is
/// shared between workers.
pub struct OrderGenerator {
    rng: ChaCha8Rng,
    spec: WorkloadSpec,
    customers: i32,
    prices: Vec<Cents>,
    /// Initial balances, by customer id - 1 (balances only fall, so more than this always fails).
    balances: Vec<Cents>,
    /// More units than any SKU ever holds.
    beyond_stock: i32,
    /// Cumulative SKU popularity, for Zipf sampling by binary search.
    sku_cdf: Vec<f64>,
}

impl OrderGenerator {
    pub fn new(spec: &WorkloadSpec, data: &DataSet, stream: u64) -> OrderGenerator {
        let weights: Vec<f64> = (1..=data.stock.len())
            .map(|rank| 1.0 / (rank as f64).powf(spec.sku_skew))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let sku_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(stream);
        OrderGenerator {
            rng,
            spec: spec.clone(),
            customers: data.wallets.len() as i32,
            prices: data.stock.iter().map(|s| s.price).collect(),
            balances: data.wallets.iter().map(|w| w.balance).collect(),
            beyond_stock: data.spec.stock.1.saturating_add(1),
            sku_cdf,
        }
    }

    fn sku(&mut self) -> Sku {
        let u: f64 = self.rng.gen();
        let index = self
            .sku_cdf
            .partition_point(|c| *c < u)
            .min(self.prices.len() - 1);
        Sku(index as i32 + 1)
    }

    pub fn next_order(&mut self) -> Order {
        if self.spec.failure_share > 0.0 && self.rng.gen_bool(self.spec.failure_share) {
            return self.failing_order();
        }
        let wanted = self
            .rng
            .gen_range(self.spec.lines.0..=self.spec.lines.1)
            .min(self.prices.len() as u32);
        let mut lines: Vec<OrderLine> = Vec::with_capacity(wanted as usize);
        while lines.len() < wanted as usize {
            let sku = self.sku();
            if lines.iter().any(|l| l.sku == sku) {
                continue;
            }
            let qty = self.rng.gen_range(self.spec.qty.0..=self.spec.qty.1) as i32;
            lines.push(OrderLine {
                sku,
                qty,
                unit_price: self.prices[sku.0 as usize - 1],
            });
        }
        let customer = CustomerId(self.rng.gen_range(1..=self.customers));
        let id = OrderId(uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid());
        Order::new(id, customer, lines).expect("generated orders are valid")
    }

    /// One line that cannot be served: too dear for the customer, or more than any stock.
    fn failing_order(&mut self) -> Order {
        let customer = CustomerId(self.rng.gen_range(1..=self.customers));
        let sku = self.sku();
        let price = self.prices[sku.0 as usize - 1];
        let qty = if self.rng.gen_bool(0.5) {
            let balance = self.balances[customer.0 as usize - 1].0;
            (balance / price.0 + 1).min(1_000_000) as i32
        } else {
            self.beyond_stock.min(1_000_000)
        };
        let id = OrderId(uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid());
        Order::new(
            id,
            customer,
            vec![OrderLine {
                sku,
                qty,
                unit_price: price,
            }],
        )
        .expect("generated orders are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::datagen::DataSetSpec;

    #[test]
    fn seeded_and_skewed() {
        let data = DataSet::generate(&DataSetSpec {
            skus: 50,
            ..DataSetSpec::default()
        })
        .unwrap();
        let spec = WorkloadSpec {
            sku_skew: 1.2,
            ..WorkloadSpec::default()
        };
        let a: Vec<Order> = {
            let mut g = OrderGenerator::new(&spec, &data, 0);
            (0..100).map(|_| g.next_order()).collect()
        };
        let b: Vec<Order> = {
            let mut g = OrderGenerator::new(&spec, &data, 0);
            (0..100).map(|_| g.next_order()).collect()
        };
        assert_eq!(a, b, "same seed and stream, same orders");
        let mut g = OrderGenerator::new(&spec, &data, 0);
        let hot = (0..2_000)
            .flat_map(|_| g.next_order().lines().to_vec())
            .filter(|l| l.sku.0 <= 5)
            .count();
        assert!(
            hot > 2_000 / 2,
            "Zipf 1.2 over 50 skus puts most lines on the first 5: {hot}"
        );
        assert!(a.iter().all(|o| (1..=3).contains(&o.lines().len())));
    }
}
