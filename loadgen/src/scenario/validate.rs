//! What a scenario must satisfy beyond its types: ranges, and fields that must agree. Each
//! error names the field, as the file spells it.

use super::{LoadMode, Scenario};

impl Scenario {
    /// Ranges and consistency that types alone cannot say.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let load = &self.load;
        match load.mode {
            LoadMode::Open => match load.rate {
                Some(rate) if rate > 0.0 && rate <= 1_000_000.0 => {}
                Some(rate) => {
                    return Err((
                        "load.rate".to_string(),
                        format!("must be in (0, 1000000] orders/s, got {rate}"),
                    ))
                }
                None => {
                    return Err((
                        "load.rate".to_string(),
                        "an open loop needs a rate (orders/s)".into(),
                    ))
                }
            },
            LoadMode::Closed => match load.clients {
                Some(c) if (1..=4096).contains(&c) => {}
                Some(c) => {
                    return Err((
                        "load.clients".to_string(),
                        format!("must be between 1 and 4096, got {c}"),
                    ))
                }
                None => {
                    return Err((
                        "load.clients".to_string(),
                        "a closed loop needs a number of clients".into(),
                    ))
                }
            },
        }
        if load.mode == LoadMode::Open && load.clients.is_some() {
            return Err((
                "load.clients".to_string(),
                "only a closed loop has clients; an open loop has a rate".into(),
            ));
        }
        if load.mode == LoadMode::Closed && load.rate.is_some() {
            return Err((
                "load.rate".to_string(),
                "only an open loop has a rate; a closed loop has clients".into(),
            ));
        }
        if !(1..=100).contains(&load.repeat) {
            return Err((
                "load.repeat".to_string(),
                format!(
                    "must be between 1 and 100 runs per protocol, got {}",
                    load.repeat
                ),
            ));
        }
        if load.duration_s == 0 || load.duration_s > 24 * 3600 {
            return Err((
                "load.duration_s".to_string(),
                format!("must be between 1 and 86400, got {}", load.duration_s),
            ));
        }
        if load.broker_warmup_s > 600 {
            return Err((
                "load.broker_warmup_s".to_string(),
                format!("must be at most 600, got {}", load.broker_warmup_s),
            ));
        }
        if load.connections == 0 || load.connections > 256 {
            return Err((
                "load.connections".to_string(),
                format!("must be between 1 and 256, got {}", load.connections),
            ));
        }
        if load.max_in_flight == 0 {
            return Err((
                "load.max_in_flight".to_string(),
                "must be at least 1".into(),
            ));
        }
        crate::run::faults::schedule::validate(&self.faults, load.duration_s)?;
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.kind == crate::run::faults::schedule::FaultKind::Surge)
        {
            if load.mode != LoadMode::Open {
                return Err((
                    format!("faults[{i}].kind"),
                    "a surge multiplies an open loop's rate; a closed loop has none".into(),
                ));
            }
        }
        if self.protocols.is_empty() {
            return Err((
                "protocols".to_string(),
                "name at least one of twopc, saga-orchestrated, saga-choreographed".into(),
            ));
        }
        if self.deadline_ms == 0 {
            return Err(("deadline_ms".to_string(), "must be positive".into()));
        }
        self.data_set_spec()
            .validate()
            .map_err(|e| (format!("dataset.{}", e.field), e.reason))?;
        let w = &self.workload;
        if w.lines.0 == 0 || w.lines.0 > w.lines.1 {
            return Err((
                "workload.lines".to_string(),
                format!("needs 1 <= min <= max, got {:?}", w.lines),
            ));
        }
        if w.lines.1 > self.dataset.skus {
            return Err((
                "workload.lines".to_string(),
                format!(
                    "an order cannot have more lines ({}) than there are skus ({})",
                    w.lines.1, self.dataset.skus
                ),
            ));
        }
        if w.qty.0 == 0 || w.qty.0 > w.qty.1 {
            return Err((
                "workload.qty".to_string(),
                format!("needs 1 <= min <= max, got {:?}", w.qty),
            ));
        }
        if !(0.0..=5.0).contains(&w.sku_skew) {
            return Err((
                "workload.sku_skew".to_string(),
                format!("must be between 0 (uniform) and 5, got {}", w.sku_skew),
            ));
        }
        if !(0.0..=1.0).contains(&w.failure_share) {
            return Err((
                "workload.failure_share".to_string(),
                format!("must be between 0 and 1, got {}", w.failure_share),
            ));
        }
        if self.saga.step_timeout_ms == 0 {
            return Err((
                "saga.step_timeout_ms".to_string(),
                "must be positive".into(),
            ));
        }
        if !(1..=100_000).contains(&self.saga.max_in_flight) {
            return Err((
                "saga.max_in_flight".to_string(),
                format!(
                    "must be between 1 and 100000, got {}",
                    self.saga.max_in_flight
                ),
            ));
        }
        if self.saga.admission_reserve_ms >= self.deadline_ms {
            return Err((
                "saga.admission_reserve_ms".to_string(),
                format!(
                    "must be below deadline_ms ({}): no order could ever be admitted, got {}",
                    self.deadline_ms, self.saga.admission_reserve_ms
                ),
            ));
        }
        if self.twopc.prepare_timeout_ms == 0 {
            return Err((
                "twopc.prepare_timeout_ms".to_string(),
                "must be positive".into(),
            ));
        }
        // Three participants' branches share the lab's PostgreSQL and its 256 prepared slots.
        if !(1..=85).contains(&self.twopc.max_in_flight) {
            return Err((
                "twopc.max_in_flight".to_string(),
                format!(
                    "must be between 1 and 85 (3 participants x 85 prepared branches fit \
                     max_prepared_transactions = 256), got {}",
                    self.twopc.max_in_flight
                ),
            ));
        }
        Ok(())
    }
}
