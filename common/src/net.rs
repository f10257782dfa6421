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

/// A gRPC server builder with the lab's settings. The HTTP/2 windows are large because h2 counts
/// small DATA frames that wait unread against a budget derived from the connection window, and
/// closes the connection (GOAWAY, ENHANCE_YOUR_CALM) when a backlog exhausts it: an overloaded
/// service would then show connection errors instead of the queueing delay it really has.
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_connection_window_size(8 << 20)
        .initial_stream_window_size(1 << 20)
}
