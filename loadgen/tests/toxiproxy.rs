//! The Toxiproxy client against the real server (`bash scripts/setup.sh` builds it): every
//! toxic is checked by real traffic through a proxy to an echo server, never by reading back
//! the API's own view. Without the server binary these tests fail, they do not skip.

use common::env::testing::test_run_dir;
use common::env::toxiproxy::ToxiproxyServer;
use loadgen::run::faults::toxiproxy::{Toxic, Toxiproxy};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every test's whole budget; a machine slow at random still finishes well inside it.
const TEST_BUDGET: Duration = Duration::from_secs(90);
/// How long a healthy exchange may take before it counts as failed.
const HEALTHY: Duration = Duration::from_secs(10);
const PROXY: &str = "echo";

/// A Toxiproxy server, an echo server, and proxy `echo` in front of it.
struct Fixture {
    api: Toxiproxy,
    proxy: SocketAddr,
    echo: SocketAddr,
    echo_task: JoinHandle<()>,
    server: ToxiproxyServer,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.echo_task.abort();
    }
}

async fn fixture(test: &str) -> Fixture {
    let run_dir = test_run_dir("toxiproxy").join(test);
    let _ = std::fs::remove_dir_all(&run_dir);
    let server = ToxiproxyServer::start(&run_dir)
        .await
        .unwrap_or_else(|err| panic!("the Toxiproxy server did not start: {err}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = listener.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let api = Toxiproxy::new(&server.api_url()).unwrap();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let proxy = api
        .create_proxy(PROXY, any_port, &echo.to_string())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_ne!(proxy.port(), 0, "the server reports the port it chose");
    Fixture {
        api,
        proxy,
        echo,
        echo_task,
        server,
    }
}

/// Runs a test body under [`TEST_BUDGET`].
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_BUDGET, body)
        .await
        .expect("the test finished within its budget");
}

/// Writes `message` on `stream` and reads the same number of bytes back.
async fn exchange(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut answer = vec![0; message.len()];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// A new connection to `addr` and one echoed message, within [`HEALTHY`].
async fn echo_on_new_connection(addr: SocketAddr) -> io::Result<Vec<u8>> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        exchange(&mut stream, b"ping").await
    };
    tokio::time::timeout(HEALTHY, attempt)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no echo in time")))
}

async fn assert_echo(addr: SocketAddr) {
    match echo_on_new_connection(addr).await {
        Ok(answer) => assert_eq!(answer, b"ping"),
        Err(err) => panic!("no echo through {addr}: {err}"),
    }
}

#[tokio::test]
async fn a_partition_silences_without_reset_and_removal_restores() {
    bounded(async {
        let fx = fixture("partition").await;
        assert_echo(fx.proxy).await;
        fx.api.add_toxic(PROXY, Toxic::Partition).await.unwrap();

        let mut stream = TcpStream::connect(fx.proxy).await.expect("still accepts");
        stream.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Err(_) => {} // silence: neither data nor EOF nor RST
            Ok(read) => panic!("a partitioned connection answered: {read:?}"),
        }
        // Still open after the silence: a write is accepted, and still nothing comes back.
        stream.write_all(b"pong").await.expect("not reset");
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
        assert!(read.is_err(), "still silent, not closed: {read:?}");

        fx.api
            .remove_toxic(PROXY, Toxic::Partition.name())
            .await
            .unwrap();
        // Unlike the lab's own proxy, removing the partition closes what it held.
        let held = tokio::time::timeout(HEALTHY, exchange(&mut stream, b"ping")).await;
        assert!(matches!(held, Ok(Err(_))), "the held connection: {held:?}");
        assert_echo(fx.proxy).await;
    })
    .await;
}

#[tokio::test]
async fn latency_delays_every_round_trip() {
    bounded(async {
        let fx = fixture("latency").await;
        let toxic = Toxic::Latency {
            latency_ms: 200,
            jitter_ms: 0,
        };
        fx.api.add_toxic(PROXY, toxic).await.unwrap();
        let mut stream = TcpStream::connect(fx.proxy).await.unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let answer = tokio::time::timeout(HEALTHY, exchange(&mut stream, b"ping"))
                .await
                .expect("a delayed echo still comes")
                .unwrap();
            assert_eq!(answer, b"ping");
            // A lower bound only: the machine may be slow, never fast.
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(200),
                "round trip took {took:?}"
            );
        }
        fx.api.remove_toxic(PROXY, toxic.name()).await.unwrap();
        assert_echo(fx.proxy).await;
    })
    .await;
}

#[tokio::test]
async fn reset_peer_breaks_new_connections_until_removed() {
    bounded(async {
        let fx = fixture("reset_peer").await;
        fx.api.add_toxic(PROXY, Toxic::ResetPeer).await.unwrap();
        match echo_on_new_connection(fx.proxy).await {
            Err(err) if err.kind() != io::ErrorKind::TimedOut => {} // RST or EOF
            other => panic!("expected a reset or EOF, got {other:?}"),
        }
        fx.api
            .remove_toxic(PROXY, Toxic::ResetPeer.name())
            .await
            .unwrap();
        assert_echo(fx.proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_disabled_proxy_refuses_and_enabling_restores() {
    bounded(async {
        let fx = fixture("enabled").await;
        fx.api.set_enabled(PROXY, false).await.unwrap();
        match echo_on_new_connection(fx.proxy).await {
            Err(err) if err.kind() != io::ErrorKind::TimedOut => {} // refused, or closed at once
            other => panic!("a disabled proxy answered: {other:?}"),
        }
        fx.api.set_enabled(PROXY, true).await.unwrap();
        assert_echo(fx.proxy).await;
    })
    .await;
}

#[tokio::test]
async fn reset_and_recreate_leave_a_working_proxy() {
    bounded(async {
        let fx = fixture("reset").await;
        fx.api.add_toxic(PROXY, Toxic::Partition).await.unwrap();
        fx.api.set_enabled(PROXY, false).await.unwrap();
        fx.api.reset().await.unwrap();
        assert_echo(fx.proxy).await;

        // Creating an existing proxy replaces it (here: on a new port).
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let again = fx
            .api
            .create_proxy(PROXY, any_port, &fx.echo.to_string())
            .await
            .unwrap();
        assert_echo(again).await;
        fx.api.delete_proxy(PROXY).await.unwrap();
        assert!(echo_on_new_connection(again).await.is_err(), "deleted");
    })
    .await;
}

#[tokio::test]
async fn errors_name_the_proxy_and_the_toxic() {
    bounded(async {
        let fx = fixture("errors").await;
        let err = fx
            .api
            .set_enabled("no-such-proxy", false)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404), "{err}");
        let text = err.to_string();
        assert!(text.contains("\"no-such-proxy\""), "{text}");
        assert!(
            text.contains("proxy not found"),
            "the server's text: {text}"
        );
        assert!(text.contains(&fx.server.api_url()), "{text}");

        let err = fx.api.add_toxic("no-such-proxy", Toxic::ResetPeer).await;
        assert!(err.unwrap_err().to_string().contains("no-such-proxy"));

        let text = fx
            .api
            .remove_toxic(PROXY, "txlab_never_added")
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("txlab_never_added_up"), "{text}");
        assert!(text.contains("toxic not found"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_credential_in_the_api_url_never_shows() {
    bounded(async {
        let fx = fixture("credentials").await;
        const SECRET: &str = "hunter2-s3cret";
        let port = fx.server.port();
        // Toxiproxy ignores the Authorization header, so the calls themselves work.
        let api = Toxiproxy::new(&format!("http://lab:{SECRET}@127.0.0.1:{port}")).unwrap();
        api.set_enabled(PROXY, true).await.unwrap();
        let api_error = api.delete_proxy("no-such-proxy").await.unwrap_err();

        // Nothing listens on this port any more: a transport error.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let gone = Toxiproxy::new(&format!("http://lab:{SECRET}@127.0.0.1:{closed_port}")).unwrap();
        let transport_error = gone.reset().await.unwrap_err();
        let bad_url = Toxiproxy::new(&format!("https://lab:{SECRET}@host")).unwrap_err();

        for text in [
            api_error.to_string(),
            format!("{api_error:?}"),
            transport_error.to_string(),
            format!("{transport_error:?}"),
            bad_url.to_string(),
            format!("{api:?}"),
        ] {
            assert!(!text.contains(SECRET), "the password leaked: {text}");
            assert!(text.contains("lab:***@"), "{text}");
        }
    })
    .await;
}
