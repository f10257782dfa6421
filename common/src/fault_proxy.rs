//! A fault-injecting TCP proxy for one network link of a run (DESIGN §5): the lab puts one on
//! every link (client→front, coordinator→participant, saga process→broker) and switches its
//! [`LinkFault`] during a scenario's fault windows.
//!
//! Design choices:
//! - **Partition stops reading.** A partitioned link reads from neither socket and forwards
//!   nothing; kernel buffers fill and senders block, so the peers see silence over established
//!   connections (no FIN, no RST). Nothing is dropped: a real blackhole loses packets and TCP
//!   retransmits them after healing, which a user-space proxy cannot emulate without corrupting
//!   the stream, so holding the bytes is the faithful equivalent. On healing, reading resumes and
//!   the held bytes arrive intact. A connection accepted during a partition is not connected
//!   upstream until the partition heals (the upstream never sees it, like a lost SYN).
//! - **Delay is a per-direction FIFO of timed chunks.** Each chunk read is due at
//!   `now + latency + U[0, jitter]`, but never before the chunk ahead of it, so jitter never
//!   reorders bytes. Waiting uses tokio timers (1 ms resolution); at most [`MAX_DELAYED`] bytes
//!   are held per direction before reading pauses (back-pressure).
//! - **Healthy writes directly**, without the queue, so a small chunk costs one read and one write.
//! - **Reset is abortive**: `SO_LINGER` 0 then close on both sockets, so both peers get RST.
//! - Fault switches go through a `watch` channel that every copy loop selects on, so they take
//!   effect on existing connections at once, even on a loop blocked in a read.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Read buffer per direction: large enough for bulk transfers, small enough per connection.
const BUF_SIZE: usize = 32 * 1024;
/// Bytes a delayed direction may hold before it stops reading, so a slow link pushes back on the
/// sender instead of growing memory.
pub const MAX_DELAYED: usize = 1 << 20;
/// An upstream connect that takes longer than this fails the client connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a link does right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkFault {
    /// Bytes flow with no added delay.
    Healthy,
    /// Blackhole: nothing flows either way and connections hang open (no FIN, no RST); new
    /// connections are accepted but reach nothing. Bytes are held, not lost (see module doc).
    Partition,
    /// Every chunk is held `latency` plus a uniform jitter in [0, `jitter`], per direction;
    /// order within a connection is preserved.
    Delay { latency: Duration, jitter: Duration },
    /// Connections are reset (RST on both sides) when this is set, and new connections are
    /// accepted then reset at once: fast failure instead of silence.
    Reset,
}

/// Counters since the proxy started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    pub connections_accepted: u64,
    /// Connections reset by [`LinkFault::Reset`].
    pub connections_reset: u64,
    /// Accepted connections closed because the upstream could not be reached.
    pub upstream_connect_failures: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
}

struct Shared {
    name: String,
    upstream: SocketAddr,
    fault: watch::Sender<LinkFault>,
    accepted: AtomicU64,
    reset: AtomicU64,
    connect_failures: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

/// One proxied link: listens on 127.0.0.1 and forwards to one upstream address.
/// Dropping it stops accepting and closes all its connections.
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Binds 127.0.0.1:0 and forwards every accepted connection to `upstream`.
    /// Must be called inside a tokio runtime; the proxy's tasks live there.
    pub async fn start(name: impl Into<String>, upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.into(),
            upstream,
            fault: watch::channel(LinkFault::Healthy).0,
            accepted: AtomicU64::new(0),
            reset: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            to_upstream: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            shared,
            addr,
            accept,
        })
    }

    /// The address clients must connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The link's name, for logs and reports.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where accepted connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Switches the fault; takes effect for existing connections too.
    pub fn set(&self, fault: LinkFault) {
        let old = self.shared.fault.send_replace(fault);
        if old != fault {
            tracing::debug!(proxy = %self.shared.name, ?old, new = ?fault, "link fault switched");
        }
    }

    /// The fault in effect.
    pub fn fault(&self) -> LinkFault {
        *self.shared.fault.borrow()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            connections_accepted: s.accepted.load(Relaxed),
            connections_reset: s.reset.load(Relaxed),
            upstream_connect_failures: s.connect_failures.load(Relaxed),
            bytes_to_upstream: s.to_upstream.load(Relaxed),
            bytes_to_client: s.to_client.load(Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    /// Aborting the accept task drops its `JoinSet`, which aborts every connection task, which
    /// closes both sockets of every connection.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    shared.accepted.fetch_add(1, Relaxed);
                    connections.spawn(serve(client, shared.clone()));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(proxy = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Closes `stream` with RST instead of FIN.
fn abort(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let mut fault = shared.fault.subscribe();
    // During a partition the accepted connection waits here; the upstream never sees it.
    let first = match fault.wait_for(|f| *f != LinkFault::Partition).await {
        Ok(f) => *f,
        Err(_) => return,
    };
    if first == LinkFault::Reset {
        shared.reset.fetch_add(1, Relaxed);
        return abort(client);
    }
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream));
    let mut upstream = match connect.await {
        Ok(Ok(upstream)) => upstream,
        failed => {
            let error = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no connection within {CONNECT_TIMEOUT:?}"),
            };
            // Expected while a crashed process is down (clients retry): debug, counted in stats.
            tracing::debug!(proxy = %shared.name, upstream = %shared.upstream, %error,
                "cannot connect upstream; closing the client connection");
            shared.connect_failures.fetch_add(1, Relaxed);
            // RST, the nearest thing to the refusal the client would have seen directly.
            return abort(client);
        }
    };
    let _ = upstream.set_nodelay(true);

    let reset = {
        let (client_r, client_w) = client.split();
        let (upstream_r, upstream_w) = upstream.split();
        let forward = async {
            tokio::try_join!(
                pump(
                    client_r,
                    upstream_w,
                    shared.fault.subscribe(),
                    &shared.to_upstream
                ),
                pump(
                    upstream_r,
                    client_w,
                    shared.fault.subscribe(),
                    &shared.to_client
                ),
            )
        };
        tokio::select! {
            biased;
            _ = fault.wait_for(|f| *f == LinkFault::Reset) => true,
            done = forward => {
                if let Err(e) = done {
                    tracing::debug!(proxy = %shared.name, error = %e, "connection ended by an I/O error");
                }
                false
            }
        }
    };
    if reset {
        shared.reset.fetch_add(1, Relaxed);
        abort(client);
        abort(upstream);
    }
    // Otherwise both directions ended: dropping the sockets closes them normally.
}

/// Copies one direction until EOF (then half-closes `to`) or an I/O error, obeying the fault.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    mut fault: watch::Receiver<LinkFault>,
    forwarded: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let mut delayed: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut delayed_bytes = 0usize;
    let mut eof = false;
    loop {
        let now = *fault.borrow_and_update();
        match now {
            // Reset is carried out by `serve`; until then, hold still like a partition.
            LinkFault::Partition | LinkFault::Reset => {
                if fault.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            // Chunks still queued from an earlier delay go first, to keep the order.
            LinkFault::Healthy => {
                while let Some((_, chunk)) = delayed.pop_front() {
                    to.write_all(&chunk).await?;
                    forwarded.fetch_add(chunk.len() as u64, Relaxed);
                    delayed_bytes -= chunk.len();
                }
            }
            LinkFault::Delay { .. } => {}
        }
        if eof && delayed.is_empty() {
            // Propagate the half-close; the peer may already be gone, which is fine.
            let _ = to.shutdown().await;
            return Ok(());
        }
        let due = delayed.front().map(|(at, _)| *at);
        tokio::select! {
            // Fault changes first, so bytes written after `set` returns see the new fault.
            biased;
            changed = fault.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                if let Some((_, chunk)) = delayed.pop_front() {
                    to.write_all(&chunk).await?;
                    forwarded.fetch_add(chunk.len() as u64, Relaxed);
                    delayed_bytes -= chunk.len();
                }
            }
            read = from.read(&mut buf), if !eof && delayed_bytes < MAX_DELAYED => {
                let n = read?;
                if n == 0 {
                    eof = true;
                } else if let LinkFault::Delay { latency, jitter } = now {
                    let mut at = Instant::now() + latency + random_up_to(jitter);
                    if let Some((ahead, _)) = delayed.back() {
                        at = at.max(*ahead);
                    }
                    delayed.push_back((at, buf[..n].to_vec()));
                    delayed_bytes += n;
                } else {
                    to.write_all(&buf[..n]).await?;
                    forwarded.fetch_add(n as u64, Relaxed);
                }
            }
        }
    }
}

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}
