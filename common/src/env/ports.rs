//! Loopback ports for the lab's servers: a free one drawn below the ephemeral range, or a
//! requested one that is checked before anything starts, so a clash gets a clear error rather
//! than a half-started lab.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The address every lab server listens on.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port nobody listens on right now, for a server that binds it a moment later.
///
/// Drawn at random below the kernel's ephemeral range: a port the kernel hands out (port 0) can
/// be given next to an outgoing connection's local end before our server binds it, which made
/// a child fail with "Address already in use" in CI. This process never hands out one port
/// twice. Another process could still take it first; the lab's servers then fail to bind and
/// say so.
pub fn free_port() -> std::io::Result<u16> {
    use rand::Rng;
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    let ephemeral_start = ephemeral_range_start();
    if ephemeral_start > LOWEST + 1_000 {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let port = rng.gen_range(LOWEST..ephemeral_start);
            let mut taken = handed_out.lock().expect("never poisoned");
            if !taken.contains(&port)
                && TcpListener::bind(SocketAddr::from((LOOPBACK, port))).is_ok()
            {
                taken.insert(port);
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range: the kernel's choice.
    let port = TcpListener::bind(SocketAddr::from((LOOPBACK, 0)))?
        .local_addr()?
        .port();
    handed_out.lock().expect("never poisoned").insert(port);
    Ok(port)
}

/// Below this are well-known and commonly configured ports.
const LOWEST: u16 = 10_000;

/// The first port the kernel hands to outgoing connections (Linux: 32768 by default).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..500).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "never the same port twice");
        let start = ephemeral_range_start();
        assert!(ports.iter().all(|p| *p >= LOWEST && *p < start), "{start}");
    }
}
