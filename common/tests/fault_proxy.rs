//! The fault proxy over real TCP on 127.0.0.1, in front of an echo server.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fault_proxy::{FaultProxy, LinkFault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const SILENCE: Duration = Duration::from_millis(300);

/// An echo server; each connection's outcome (bytes echoed or the error) goes to the receiver.
async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<std::io::Result<u64>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            socket.set_nodelay(true).unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tx.send(tokio::io::copy(&mut r, &mut w).await);
            });
        }
    });
    (addr, rx)
}

async fn proxy_to_echo() -> (FaultProxy, mpsc::UnboundedReceiver<std::io::Result<u64>>) {
    let (echo, outcomes) = echo_server().await;
    (FaultProxy::start("test", echo).await.unwrap(), outcomes)
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `msg` and reads back exactly as many bytes.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    read_n(stream, msg.len()).await
}

async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).await.unwrap();
    buf
}

/// Asserts nothing arrives for `SILENCE`: no bytes, no EOF, no error.
async fn assert_silent(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = timeout(SILENCE, stream.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
}

/// Reads until EOF or error; returns the error kind, or None for a clean EOF.
async fn read_to_close(stream: &mut TcpStream) -> Option<ErrorKind> {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return None,
            Ok(_) => continue,
            Err(e) => return Some(e.kind()),
        }
    }
}

#[tokio::test]
async fn healthy_round_trips_1_mib_and_counts_bytes() {
    let (proxy, _) = proxy_to_echo().await;
    timeout(LIMIT, async {
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let stream = connect(&proxy).await;
        let (mut r, mut w) = stream.into_split();
        let sent = data.clone();
        let writer = tokio::spawn(async move { w.write_all(&sent).await.unwrap() });
        let mut echoed = vec![0u8; data.len()];
        r.read_exact(&mut echoed).await.unwrap();
        writer.await.unwrap();
        assert!(echoed == data, "echo differs from what was sent");
        // The proxy counts a chunk just after writing it: allow it a moment.
        while proxy.stats().bytes_to_client < data.len() as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let stats = proxy.stats();
        assert_eq!(stats.bytes_to_upstream, data.len() as u64);
        assert_eq!(stats.bytes_to_client, data.len() as u64);
        assert_eq!(stats.connections_accepted, 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn delay_adds_latency_each_way_and_jitter_keeps_order() {
    let (proxy, _) = proxy_to_echo().await;
    timeout(LIMIT, async {
        let mut stream = connect(&proxy).await;
        round_trip(&mut stream, b"warm").await;

        proxy.set(LinkFault::Delay {
            latency: Duration::from_millis(50),
            jitter: Duration::ZERO,
        });
        let start = Instant::now();
        assert_eq!(round_trip(&mut stream, b"x").await, b"x");
        let rtt = start.elapsed();
        assert!(
            rtt >= Duration::from_millis(100),
            "round trip {rtt:?} < 2 × 50 ms"
        );
        assert!(rtt < Duration::from_secs(1), "round trip {rtt:?}");

        // Separate small writes, each its own chunk, with jitter larger than their spacing.
        proxy.set(LinkFault::Delay {
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(20),
        });
        let (mut r, mut w) = stream.into_split();
        let writer = tokio::spawn(async move {
            for i in 0..200u32 {
                w.write_all(&i.to_be_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut echoed = vec![0u8; 800];
        r.read_exact(&mut echoed).await.unwrap();
        writer.await.unwrap();
        let expected: Vec<u8> = (0..200u32).flat_map(u32::to_be_bytes).collect();
        assert!(
            echoed == expected,
            "bytes reordered or corrupted under jitter"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn partition_hangs_without_loss_and_heals() {
    let (proxy, _) = proxy_to_echo().await;
    timeout(LIMIT, async {
        let mut old = connect(&proxy).await;
        assert_eq!(round_trip(&mut old, b"before").await, b"before");

        proxy.set(LinkFault::Partition);
        let forwarded = proxy.stats().bytes_to_upstream;
        old.write_all(b"during").await.unwrap();
        let mut new = connect(&proxy).await; // accepted, but nothing flows
        new.write_all(b"new").await.unwrap();
        tokio::join!(assert_silent(&mut old), assert_silent(&mut new));
        assert_eq!(
            proxy.stats().bytes_to_upstream,
            forwarded,
            "bytes crossed a partition"
        );

        proxy.set(LinkFault::Healthy);
        assert_eq!(read_n(&mut old, 6).await, b"during");
        assert_eq!(read_n(&mut new, 3).await, b"new");
        assert_eq!(round_trip(&mut new, b"after").await, b"after");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reset_resets_both_sides_then_heals() {
    let (proxy, mut upstream_outcomes) = proxy_to_echo().await;
    timeout(LIMIT, async {
        let mut stream = connect(&proxy).await;
        assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");

        proxy.set(LinkFault::Reset);
        let kind = timeout(Duration::from_secs(1), read_to_close(&mut stream))
            .await
            .unwrap();
        assert_eq!(kind, Some(ErrorKind::ConnectionReset));
        let upstream = upstream_outcomes.recv().await.unwrap();
        assert_eq!(upstream.unwrap_err().kind(), ErrorKind::ConnectionReset);

        let mut refused = connect(&proxy).await; // accepted, then reset
        let kind = timeout(Duration::from_secs(1), read_to_close(&mut refused))
            .await
            .unwrap();
        assert_eq!(kind, Some(ErrorKind::ConnectionReset));
        assert_eq!(proxy.stats().connections_reset, 2);

        proxy.set(LinkFault::Healthy);
        let mut healed = connect(&proxy).await;
        assert_eq!(round_trip(&mut healed, b"again").await, b"again");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    let nothing = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start("down", nothing).await.unwrap();
    let mut stream = connect(&proxy).await;
    let closed = timeout(Duration::from_secs(1), read_to_close(&mut stream)).await;
    assert!(closed.is_ok(), "client connection left hanging");
    assert_eq!(proxy.stats().upstream_connect_failures, 1);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let (proxy, _) = proxy_to_echo().await;
    let mut stream = connect(&proxy).await;
    timeout(LIMIT, round_trip(&mut stream, b"hi"))
        .await
        .unwrap();
    drop(proxy);
    let closed = timeout(Duration::from_secs(1), read_to_close(&mut stream)).await;
    assert!(closed.is_ok(), "client connection outlived the proxy");
}
