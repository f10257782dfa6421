//! The invariant checker (DESIGN §2). It reads every database directly, once the system is
//! quiescent, and compares them with the data set the run started from. Every violation carries
//! the rows that show it; leftovers (prepared branches, unfinished orders and sagas) are counted
//! and reported, never hidden.

use crate::datagen::DataSet;
use crate::domain::{Cents, CustomerId, OrderId, OrderStatus, OutcomeKind, Sku};
use crate::storage::{Databases, StorageError, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

mod rules;
use rules::{judge_order, Rules};

/// A broken invariant. Any one of these means the protocol lost atomicity or conservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// Units were created or lost: initial ≠ available + held (RESERVED or COMMITTED) units.
    Stock {
        sku: Sku,
        initial: i64,
        available: i64,
        held: i64,
    },
    /// Money was created or lost: initial balance ≠ balance + captured payments, per customer.
    Money {
        customer: CustomerId,
        initial: Cents,
        balance: Cents,
        captured: Cents,
    },
    /// An order's services disagree on its fate.
    Atomicity {
        order: OrderEvidence,
        problem: String,
    },
    /// The client was told one thing and the databases hold another (e.g. COMMITTED, but the
    /// order is not CONFIRMED).
    ClientOutcome {
        order_id: OrderId,
        told: OutcomeKind,
        status: Option<String>,
    },
    /// A row whose status text the domain does not know.
    UnknownStatus {
        table: String,
        key: String,
        status: String,
    },
}

/// Something left unfinished after the run: not a broken invariant, but never to be hidden.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leftover {
    /// A 2PC branch still prepared: it holds its locks.
    PreparedTransaction {
        database: String,
        gid: String,
        prepared_at: String,
    },
    /// An order whose outcome was never recorded.
    PendingOrder { order: OrderEvidence },
    /// A saga whose state machine is not in a final state.
    OpenSaga { order_id: OrderId, state: String },
}

/// Everything the services hold about one order: the rows a reader needs to judge it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvidence {
    pub order_id: Option<OrderId>,
    /// `orders` row: status and amount.
    pub order: Option<(String, Cents)>,
    /// `orders.customer_id`.
    #[serde(default)]
    pub customer: Option<CustomerId>,
    /// `order_lines` rows: sku → qty.
    pub lines: BTreeMap<i32, i32>,
    /// `order_lines.unit_price_cents`: sku → price the order was placed at.
    #[serde(default)]
    pub unit_prices: BTreeMap<i32, i64>,
    /// `payments` row: status and amount.
    pub payment: Option<(String, Cents)>,
    /// `payments.customer_id`: whose wallet paid.
    #[serde(default)]
    pub payer: Option<CustomerId>,
    /// `reservations` rows: sku → (qty, status).
    pub reservations: BTreeMap<i32, (i32, String)>,
    /// The 2PC coordinator's decision log holds a COMMIT for this order.
    #[serde(default)]
    pub commit_logged: bool,
}

/// What the checker saw, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    pub orders_confirmed: u64,
    pub orders_cancelled: u64,
    pub orders_pending: u64,
    pub payments_captured: u64,
    pub payments_refunded: u64,
    pub reservations_committed: u64,
    pub reservations_released: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub violations: Vec<Violation>,
    pub leftovers: Vec<Leftover>,
    pub counts: CheckCounts,
}

impl CheckReport {
    /// No violation and nothing left hanging.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.leftovers.is_empty()
    }

    /// One line per finding, for terminals and logs.
    pub fn describe(&self) -> Vec<String> {
        let violations = self.violations.iter().map(|v| {
            format!(
                "violation: {}",
                serde_json::to_string(v).unwrap_or_default()
            )
        });
        let leftovers = self
            .leftovers
            .iter()
            .map(|l| format!("leftover: {}", serde_json::to_string(l).unwrap_or_default()));
        violations.chain(leftovers).collect()
    }
}

/// Reads every database and checks every invariant against `initial`.
pub async fn check(dbs: &Databases, initial: &DataSet) -> Result<CheckReport, StorageError> {
    let mut report = CheckReport::default();
    // Unfinished work first. The databases are read one after another, not as one snapshot: if
    // nothing is prepared or open at this moment, every decision was applied before the reads
    // below, so they see settled state. Read in the other order, a commit landing mid-check could
    // make a half-read look clean.
    find_prepared(dbs, &mut report).await?;
    find_open_sagas(dbs, &mut report).await?;
    check_stock(dbs, initial, &mut report).await?;
    check_money(dbs, initial, &mut report).await?;
    check_atomicity(dbs, initial, &mut report).await?;
    Ok(report)
}

/// The status of each of these orders that exists.
async fn order_statuses(
    dbs: &Databases,
    orders: impl Iterator<Item = OrderId>,
) -> Result<HashMap<Uuid, String>, StorageError> {
    let ids: Vec<Uuid> = orders.map(|id| id.0).collect();
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM orders WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&dbs.orders)
            .await
            .map_err(StorageError::query(Store::Orders, "reading order statuses"))?;
    Ok(rows.into_iter().collect())
}

/// Compares what clients were told with what the databases hold, once quiescent: COMMITTED
/// must be CONFIRMED; REJECTED and ABORTED must not be; UNDECIDED may be anything.
pub async fn check_outcomes(
    dbs: &Databases,
    told: &[(OrderId, OutcomeKind)],
) -> Result<Vec<Violation>, StorageError> {
    let status = order_statuses(dbs, told.iter().map(|(id, _)| *id)).await?;
    let confirmed = OrderStatus::Confirmed.as_str();
    Ok(told
        .iter()
        .filter_map(|(id, kind)| {
            let found = status.get(&id.0).cloned();
            let is_confirmed = found.as_deref() == Some(confirmed);
            let wrong = match kind {
                OutcomeKind::Committed => !is_confirmed,
                OutcomeKind::Rejected | OutcomeKind::Aborted => is_confirmed,
                OutcomeKind::Undecided => false,
            };
            wrong.then_some(Violation::ClientOutcome {
                order_id: *id,
                told: *kind,
                status: found,
            })
        })
        .collect())
}

/// Where the orders whose clients got no answer (transport errors, give-ups) ended, by status
/// ("CONFIRMED", "CANCELLED", …; "NONE" for an order never written). Read after quiescence, when
/// every one must be terminal one way or the other: one still PENDING is also a leftover.
pub async fn fates_of_unanswered(
    dbs: &Databases,
    unanswered: &[OrderId],
) -> Result<BTreeMap<String, u64>, StorageError> {
    let status = order_statuses(dbs, unanswered.iter().copied()).await?;
    let mut fates = BTreeMap::new();
    for id in unanswered {
        let fate = status.get(&id.0).map_or("NONE", String::as_str);
        *fates.entry(fate.to_string()).or_insert(0) += 1;
    }
    Ok(fates)
}

async fn check_stock(
    dbs: &Databases,
    initial: &DataSet,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT s.sku, s.available::bigint,
                COALESCE((SELECT sum(r.qty) FROM reservations r
                          WHERE r.sku = s.sku AND r.status IN ('RESERVED', 'COMMITTED')), 0)::bigint
         FROM stock s ORDER BY s.sku",
    )
    .fetch_all(&dbs.inventory)
    .await
    .map_err(StorageError::query(Store::Inventory, "reading stock"))?;
    let mut expected: BTreeMap<i32, i64> = initial
        .stock
        .iter()
        .map(|s| (s.sku.0, i64::from(s.available)))
        .collect();
    for (sku, available, held) in rows {
        let initial = expected.remove(&sku).unwrap_or(0);
        if initial != available + held {
            report.violations.push(Violation::Stock {
                sku: Sku(sku),
                initial,
                available,
                held,
            });
        }
    }
    for (sku, initial) in expected {
        report.violations.push(Violation::Stock {
            sku: Sku(sku),
            initial,
            available: 0,
            held: 0,
        });
    }
    Ok(())
}

async fn check_money(
    dbs: &Databases,
    initial: &DataSet,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT w.customer_id, w.balance_cents,
                COALESCE((SELECT sum(p.amount_cents) FROM payments p
                          WHERE p.customer_id = w.customer_id AND p.status = 'CAPTURED'), 0)::bigint
         FROM wallets w ORDER BY w.customer_id",
    )
    .fetch_all(&dbs.payments)
    .await
    .map_err(StorageError::query(Store::Payments, "reading wallets"))?;
    let mut expected: BTreeMap<i32, i64> = initial
        .wallets
        .iter()
        .map(|w| (w.customer.0, w.balance.0))
        .collect();
    for (customer, balance, captured) in rows {
        let initial = expected.remove(&customer).unwrap_or(0);
        if initial != balance + captured {
            report.violations.push(Violation::Money {
                customer: CustomerId(customer),
                initial: Cents(initial),
                balance: Cents(balance),
                captured: Cents(captured),
            });
        }
    }
    for (customer, initial) in expected {
        report.violations.push(Violation::Money {
            customer: CustomerId(customer),
            initial: Cents(initial),
            balance: Cents(0),
            captured: Cents(0),
        });
    }
    Ok(())
}

async fn check_atomicity(
    dbs: &Databases,
    initial: &DataSet,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let mut evidence: HashMap<Uuid, OrderEvidence> = HashMap::new();
    let orders: Vec<(Uuid, String, i64, i32)> =
        sqlx::query_as("SELECT id, status, amount_cents, customer_id FROM orders")
            .fetch_all(&dbs.orders)
            .await
            .map_err(StorageError::query(Store::Orders, "reading orders"))?;
    for (id, status, amount, customer) in orders {
        let e = evidence.entry(id).or_default();
        e.order = Some((status, Cents(amount)));
        e.customer = Some(CustomerId(customer));
    }
    let lines: Vec<(Uuid, i32, i32, i64)> =
        sqlx::query_as("SELECT order_id, sku, qty, unit_price_cents FROM order_lines")
            .fetch_all(&dbs.orders)
            .await
            .map_err(StorageError::query(Store::Orders, "reading order lines"))?;
    for (id, sku, qty, price) in lines {
        let e = evidence.entry(id).or_default();
        e.lines.insert(sku, qty);
        e.unit_prices.insert(sku, price);
    }
    let payments: Vec<(Uuid, String, i64, i32)> =
        sqlx::query_as("SELECT order_id, status, amount_cents, customer_id FROM payments")
            .fetch_all(&dbs.payments)
            .await
            .map_err(StorageError::query(Store::Payments, "reading payments"))?;
    for (id, status, amount, payer) in payments {
        let e = evidence.entry(id).or_default();
        e.payment = Some((status, Cents(amount)));
        e.payer = Some(CustomerId(payer));
    }
    let committed: Vec<Uuid> = sqlx::query_scalar("SELECT order_id FROM decisions")
        .fetch_all(&dbs.coordinator)
        .await
        .map_err(StorageError::query(
            Store::Coordinator,
            "reading the decision log",
        ))?;
    // Presumed abort: only 2PC writes this log, and only COMMITs. A run that logged any was a
    // 2PC run, and then every CONFIRMED order needs its COMMIT.
    let rules = Rules {
        two_phase: !committed.is_empty(),
        prices: initial.stock.iter().map(|s| (s.sku.0, s.price.0)).collect(),
    };
    for id in committed {
        evidence.entry(id).or_default().commit_logged = true;
    }
    let reservations: Vec<(Uuid, i32, i32, String)> =
        sqlx::query_as("SELECT order_id, sku, qty, status FROM reservations")
            .fetch_all(&dbs.inventory)
            .await
            .map_err(StorageError::query(
                Store::Inventory,
                "reading reservations",
            ))?;
    for (id, sku, qty, status) in reservations {
        evidence
            .entry(id)
            .or_default()
            .reservations
            .insert(sku, (qty, status));
    }

    let ids: BTreeSet<Uuid> = evidence.keys().copied().collect();
    for id in ids {
        let mut order = evidence.remove(&id).unwrap_or_default();
        order.order_id = Some(OrderId(id));
        judge_order(order, &rules, report);
    }
    Ok(())
}

async fn find_prepared(dbs: &Databases, report: &mut CheckReport) -> Result<(), StorageError> {
    // pg_prepared_xacts lists the whole cluster; a deployment may spread databases over several
    // clusters, so ask each database for its own.
    for store in Store::ALL {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT database::text, gid, prepared::text FROM pg_prepared_xacts
             WHERE database = current_database() ORDER BY prepared",
        )
        .fetch_all(dbs.pool(store))
        .await
        .map_err(StorageError::query(store, "reading pg_prepared_xacts"))?;
        for (database, gid, prepared_at) in rows {
            report.leftovers.push(Leftover::PreparedTransaction {
                database,
                gid,
                prepared_at,
            });
        }
    }
    Ok(())
}

async fn find_open_sagas(dbs: &Databases, report: &mut CheckReport) -> Result<(), StorageError> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT order_id, state FROM sagas WHERE NOT terminal ORDER BY created_at")
            .fetch_all(&dbs.orchestrator)
            .await
            .map_err(StorageError::query(Store::Orchestrator, "reading sagas"))?;
    for (id, state) in rows {
        report.leftovers.push(Leftover::OpenSaga {
            order_id: OrderId(id),
            state,
        });
    }
    Ok(())
}
