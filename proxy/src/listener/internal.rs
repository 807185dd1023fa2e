//! Envoy's internal listeners (`internal_listener: {}`, no address) and the endpoints that
//! reach them (`envoy_internal_address`), as Istio's waypoints use them (`main_internal`,
//! `connect_originate`).
//!
//! An internal listener is served on a private loopback socket (`127.0.0.1`, an ephemeral
//! port): the whole listener stack (filter-chain match, TLS, HTTP, tcp_proxy) then works on it
//! unchanged. What makes it internal is who may connect: only a connection Isthmus dialled
//! itself through [`dial`], whose source address it registered first together with the
//! original destination the endpoint carries (`envoy.filters.listener.original_dst` host
//! metadata, passed through by `internal_upstream`). Anything else reaching the port is closed
//! at accept. The cost against Envoy's in-memory pipe is one loopback TCP hop.
//!
//! Hosts of a cluster are keyed by socket address everywhere else, so an internal endpoint
//! gets a stable synthetic address in `240.0.0.0/4` (reserved, never routed) that
//! [`connect`](crate::cluster::connector::connect) recognises.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};

use tokio::net::{TcpSocket, TcpStream};

/// Where an internal endpoint leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `server_listener_name`.
    pub listener: String,
    /// `endpoint_id` (distinguishes endpoints of one listener).
    pub endpoint_id: String,
    /// The original destination the internal listener sees (its chain matching uses it).
    pub original_dst: Option<SocketAddr>,
}

#[derive(Default)]
struct Registry {
    /// Internal listener name → its private loopback address.
    listeners: HashMap<String, SocketAddr>,
    /// Synthetic host address → target, and back.
    targets: HashMap<SocketAddr, Target>,
    synthetic: HashMap<Target, SocketAddr>,
    /// Source address of a connection being dialled → the original destination it carries.
    pending: HashMap<SocketAddr, Option<SocketAddr>>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Records where the internal listener `name` accepts.
pub fn register_listener(name: &str, addr: SocketAddr) {
    registry().listeners.insert(name.to_string(), addr);
}

/// Forgets the internal listener `name`.
pub fn unregister_listener(name: &str) {
    registry().listeners.remove(name);
}

/// The synthetic host address of an internal endpoint (stable for the same target).
pub fn endpoint_addr(target: Target) -> SocketAddr {
    let mut r = registry();
    if let Some(a) = r.synthetic.get(&target) {
        return *a;
    }
    let n = u32::try_from(r.synthetic.len()).unwrap_or(u32::MAX).wrapping_add(1);
    let ip = Ipv4Addr::from(0xF000_0000 | (n & 0x0FFF_FFFF));
    let addr = SocketAddr::new(IpAddr::V4(ip), 1);
    r.synthetic.insert(target.clone(), addr);
    r.targets.insert(addr, target);
    addr
}

/// The target behind a synthetic address, if `addr` is one.
pub fn target(addr: SocketAddr) -> Option<Target> {
    if !matches!(addr.ip(), IpAddr::V4(v4) if v4.octets()[0] >= 240) {
        return None;
    }
    registry().targets.get(&addr).cloned()
}

/// Connects to an internal listener, registering the connection (by its source address)
/// with the original destination it carries before the listener can accept it.
pub async fn dial(t: &Target) -> io::Result<TcpStream> {
    let Some(listener) = registry().listeners.get(&t.listener).copied() else {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("no internal listener named {:?}", t.listener),
        ));
    };
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?;
    let local = sock.local_addr()?;
    registry().pending.insert(local, t.original_dst);
    match sock.connect(listener).await {
        Ok(s) => Ok(s),
        Err(e) => {
            registry().pending.remove(&local);
            Err(e)
        }
    }
}

/// At accept: `Some(original destination)` for a connection [`dial`] made, `None` for any
/// other (which the listener closes).
pub fn accepted(peer: SocketAddr) -> Option<Option<SocketAddr>> {
    registry().pending.remove(&peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_dialled_connections_are_known_and_carry_their_destination() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        register_listener("t_internal", l.local_addr().unwrap());
        let t = Target {
            listener: "t_internal".into(),
            endpoint_id: "10.0.0.1:80".into(),
            original_dst: Some("10.0.0.1:80".parse().unwrap()),
        };
        let a = endpoint_addr(t.clone());
        assert_eq!(endpoint_addr(t.clone()), a, "stable");
        assert_eq!(target(a), Some(t.clone()));
        assert_eq!(target("10.0.0.1:80".parse().unwrap()), None);
        let _c = dial(&t).await.unwrap();
        let (_, peer) = l.accept().await.unwrap();
        assert_eq!(accepted(peer), Some(Some("10.0.0.1:80".parse().unwrap())));
        assert_eq!(accepted(peer), None, "used once");
        let _stranger = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (_, peer) = l.accept().await.unwrap();
        assert_eq!(accepted(peer), None, "not dialled by Isthmus");
        unregister_listener("t_internal");
        assert!(dial(&t).await.is_err());
    }
}
