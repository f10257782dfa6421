//! An `OrderApi` that does nothing but answer COMMITTED, optionally stalling every request for a
//! window or serving one at a time: the load generator's own yardstick (its ceiling,
//! coordinated-omission tests, and what is measured past a server's capacity).

use common::api::pb::{Outcome, OutcomeKind, PlaceOrderRequest};
use common::api::{unix_micros_now, OrderApi, OrderApiServer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests arriving before `until` wait until then.
#[derive(Clone, Default)]
pub struct Stall {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Stall {
    pub fn stall_until(&self, until: Instant) {
        *self.until.lock().expect("stall lock") = Some(until);
    }
}

#[derive(Clone, Default)]
pub struct NoopOrderApi {
    pub stall: Stall,
    /// One request at a time, each taking this long: a capacity of 1/`each` orders per second.
    serial: Option<(Duration, Arc<tokio::sync::Mutex<()>>)>,
}

impl NoopOrderApi {
    /// A server that saturates: it answers one order at a time, each after `each`.
    pub fn saturating(each: Duration) -> NoopOrderApi {
        NoopOrderApi {
            serial: Some((each, Arc::default())),
            ..NoopOrderApi::default()
        }
    }
}

#[tonic::async_trait]
impl OrderApi for NoopOrderApi {
    async fn place_order(
        &self,
        request: tonic::Request<PlaceOrderRequest>,
    ) -> Result<tonic::Response<Outcome>, tonic::Status> {
        let until = *self.stall.until.lock().expect("stall lock");
        if let Some(until) = until.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until.into()).await;
        }
        if let Some((each, one_at_a_time)) = &self.serial {
            let _turn = one_at_a_time.lock().await;
            tokio::time::sleep(*each).await;
        }
        let now = unix_micros_now();
        Ok(tonic::Response::new(Outcome {
            order_id: request.into_inner().order_id,
            kind: OutcomeKind::Committed as i32,
            reason: String::new(),
            amount_cents: 0,
            received_unix_us: now,
            accepted_unix_us: now,
            decided_unix_us: now,
        }))
    }
}

/// Serves `api` on a free loopback port until the returned sender is dropped.
pub async fn serve(
    api: NoopOrderApi,
) -> std::io::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        common::net::server_builder()
            .add_service(OrderApiServer::new(api))
            .serve_with_incoming_shutdown(common::net::nodelay_incoming(listener), async {
                let _ = stop_rx.await;
            }),
    );
    Ok((addr, stop_tx))
}
