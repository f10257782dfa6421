//! Accepting connections for the lab's gRPC servers.

use futures_core::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

/// The accepted connections of `listener`, with Nagle's algorithm off. tonic's own
/// `tcp_nodelay` applies only to listeners it binds itself; without this, a small reply can wait
/// for the peer's delayed ACK (~40 ms on Linux) and the lab would measure TCP, not the protocol.
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
