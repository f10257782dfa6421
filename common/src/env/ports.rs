//! Loopback ports for the lab's servers: a free one chosen by the kernel, or a requested one that
//! is checked before anything starts, so a clash gets a clear error rather than a half-started lab.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The address every lab server listens on.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port nobody listens on right now. Another process could take it before we do; the lab's
/// servers then fail to bind and say so.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::from((LOOPBACK, 0)))?
        .local_addr()?
        .port())
}

/// `Some(port)` checked to be free, or a fresh free port.
pub fn choose_port(requested: Option<u16>, what: &'static str) -> Result<u16, super::EnvError> {
    match requested {
        Some(port) => match TcpListener::bind(SocketAddr::from((LOOPBACK, port))) {
            Ok(_) => Ok(port),
            Err(source) => Err(super::EnvError::PortTaken { what, port, source }),
        },
        None => free_port().map_err(|source| super::EnvError::Io {
            what: "finding a free port",
            path: "127.0.0.1".into(),
            source,
        }),
    }
}
