//! The data set every run starts from, generated from a seed: the same seed gives the same
//! customers, balances, SKUs, stock and prices, on any machine (ChaCha8 is portable).

use crate::domain::{Cents, CustomerId, Sku};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What to generate. Ranges are inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSetSpec {
    /// Seed of the generator; written into every result.
    pub seed: u64,
    /// Number of customers (ids 1..=customers), each with one wallet.
    pub customers: u32,
    /// Number of SKUs (ids 1..=skus).
    pub skus: u32,
    /// Initial wallet balance, in cents.
    pub balance_cents: (i64, i64),
    /// Initial units available per SKU.
    pub stock: (i32, i32),
    /// Catalog price per unit, in cents.
    pub price_cents: (i64, i64),
}

impl Default for DataSetSpec {
    fn default() -> Self {
        DataSetSpec {
            seed: 42,
            customers: 1_000,
            skus: 100,
            balance_cents: (50_000, 200_000),
            stock: (1_000, 5_000),
            price_cents: (100, 5_000),
        }
    }
}

/// A field of [`DataSetSpec`] that cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dataset.{field}: {reason}")]
pub struct InvalidDataSetSpec {
    pub field: &'static str,
    pub reason: String,
}

/// One wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub customer: CustomerId,
    pub balance: Cents,
}

/// One SKU's stock and catalog price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockItem {
    pub sku: Sku,
    pub available: i32,
    pub price: Cents,
}

/// The generated start state; the invariant checker compares the databases against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSet {
    pub spec: DataSetSpec,
    pub wallets: Vec<Wallet>,
    pub stock: Vec<StockItem>,
}

impl DataSetSpec {
    pub fn validate(&self) -> Result<(), InvalidDataSetSpec> {
        let err = |field, reason: &str| {
            Err(InvalidDataSetSpec {
                field,
                reason: reason.to_string(),
            })
        };
        if self.customers == 0 || self.customers > i32::MAX as u32 {
            return err("customers", "must be between 1 and 2^31-1");
        }
        if self.skus == 0 || self.skus > i32::MAX as u32 {
            return err("skus", "must be between 1 and 2^31-1");
        }
        if self.balance_cents.0 < 0 || self.balance_cents.0 > self.balance_cents.1 {
            return err("balance_cents", "needs 0 <= min <= max");
        }
        if self.stock.0 < 0 || self.stock.0 > self.stock.1 {
            return err("stock", "needs 0 <= min <= max");
        }
        if self.price_cents.0 <= 0 || self.price_cents.0 > self.price_cents.1 {
            return err("price_cents", "needs 0 < min <= max");
        }
        Ok(())
    }
}

impl DataSet {
    pub fn generate(spec: &DataSetSpec) -> Result<DataSet, InvalidDataSetSpec> {
        spec.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let wallets = (1..=spec.customers as i32)
            .map(|id| Wallet {
                customer: CustomerId(id),
                balance: Cents(rng.gen_range(spec.balance_cents.0..=spec.balance_cents.1)),
            })
            .collect();
        let stock = (1..=spec.skus as i32)
            .map(|id| StockItem {
                sku: Sku(id),
                available: rng.gen_range(spec.stock.0..=spec.stock.1),
                price: Cents(rng.gen_range(spec.price_cents.0..=spec.price_cents.1)),
            })
            .collect();
        Ok(DataSet {
            spec: spec.clone(),
            wallets,
            stock,
        })
    }

    /// Σ of all initial balances.
    pub fn total_balance(&self) -> Cents {
        Cents(self.wallets.iter().map(|w| w.balance.0).sum())
    }

    pub fn price_of(&self, sku: Sku) -> Option<Cents> {
        self.stock
            .get(usize::try_from(sku.0).ok()?.checked_sub(1)?)
            .map(|s| s.price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let spec = DataSetSpec {
            customers: 200,
            skus: 50,
            ..DataSetSpec::default()
        };
        let a = DataSet::generate(&spec).unwrap();
        let b = DataSet::generate(&spec).unwrap();
        assert_eq!(a, b);
        let c = DataSet::generate(&DataSetSpec {
            seed: spec.seed + 1,
            ..spec.clone()
        })
        .unwrap();
        assert_ne!(a.wallets, c.wallets);
        assert_ne!(a.stock, c.stock);
        assert_eq!(a.wallets.len(), 200);
        assert_eq!(a.price_of(Sku(50)), Some(a.stock[49].price));
        assert_eq!(a.price_of(Sku(51)), None);
        assert!(a
            .stock
            .iter()
            .all(|s| (1_000..=5_000).contains(&s.available)));
    }

    #[test]
    fn bad_spec_names_the_field() {
        let spec = DataSetSpec {
            stock: (10, 5),
            ..DataSetSpec::default()
        };
        assert_eq!(
            DataSet::generate(&spec).unwrap_err().to_string(),
            "dataset.stock: needs 0 <= min <= max"
        );
    }
}
