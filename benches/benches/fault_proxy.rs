//! The fault proxy's cost on a healthy link (DESIGN §5): a 64-byte request/response round trip
//! on loopback, straight to an echo server and through one `FaultProxy` hop. The difference of
//! the two medians is the latency the proxy adds to every fault run's links (Toxiproxy claims
//! under 100 µs per hop).

use common::fault_proxy::FaultProxy;
use criterion::{criterion_group, criterion_main, Criterion};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// An echo server on 127.0.0.1, Nagle off like every lab service.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while socket.read_exact(&mut buf).await.is_ok() {
                    if socket.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn round_trip(stream: &mut TcpStream) {
    let mut buf = [7u8; 64];
    stream.write_all(&buf).await.unwrap();
    stream.read_exact(&mut buf).await.unwrap();
}

fn proxy_overhead(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let (mut direct, mut proxied, _proxy) = runtime.block_on(async {
        let echo = echo_server().await;
        let proxy = FaultProxy::start("bench", echo).await.unwrap();
        (connect(echo).await, connect(proxy.addr()).await, proxy)
    });
    let mut group = c.benchmark_group("fault_proxy_round_trip_64B");
    for (name, stream) in [("direct", &mut direct), ("through_proxy", &mut proxied)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        round_trip(stream).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = txlab_benches::budget();
    targets = proxy_overhead
}
criterion_main!(benches);
