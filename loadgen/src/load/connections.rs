//! The client side's HTTP/2 connections to the front service. One connection serializes every
//! order through one socket, one HPACK state and one flow-control window; at tens of thousands
//! of orders per second that connection, not the system under test, becomes the bottleneck (and
//! h2's small-frame budget closes it). Orders are spread round-robin over a few connections, as
//! a population of real clients would be.

use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::transport::{Channel, Endpoint};

/// Connections the load generator opens to the front service unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// A fixed set of independent HTTP/2 connections to one address.
#[derive(Debug)]
pub struct Connections {
    channels: Vec<Channel>,
    next: AtomicUsize,
}

impl Connections {
    /// Opens `count` (at least 1) connections to `url` (`http://host:port`), with TCP_NODELAY.
    pub async fn open(url: &str, count: usize) -> Result<Connections, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(url.to_string())?
            .tcp_nodelay(true)
            // A deep backlog at the server must not trip h2's budget for small DATA frames.
            .initial_connection_window_size(8 << 20)
            .initial_stream_window_size(1 << 20);
        let mut channels = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            channels.push(endpoint.connect().await?);
        }
        Ok(Connections {
            channels,
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection, round-robin.
    pub fn next(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }
}
