//! Side-by-side runs: the same bootstrap through a real Envoy and through Isthmus, one after
//! the other, so a test compares what each does with the same requests.

use std::net::SocketAddr;

use crate::envoy::Envoy;
use crate::proxy::Proxy;

/// The two proxies, in the order side-by-side tests run them.
pub const BOTH: [&str; 2] = ["envoy", "isthmus"];

/// One running proxy; stopped on drop.
pub enum Running {
    /// Envoy 1.40.
    Envoy(Envoy),
    /// Isthmus.
    Isthmus(Proxy),
}

impl Running {
    /// Starts `who` (`"envoy"` or `"isthmus"`) on `yaml` and waits until it is ready.
    pub async fn start(who: &str, yaml: &str) -> Running {
        match who {
            "envoy" => Running::Envoy(Envoy::start(yaml).await),
            _ => Running::Isthmus(Proxy::start(yaml)),
        }
    }

    /// A listener's bound address.
    pub fn listener(&self, name: &str) -> SocketAddr {
        match self {
            Running::Envoy(e) => e.listener(name),
            Running::Isthmus(p) => p.listener(name),
        }
    }

    /// The Envoy process, for its stats.
    pub fn envoy(&self) -> Option<&Envoy> {
        match self {
            Running::Envoy(e) => Some(e),
            Running::Isthmus(_) => None,
        }
    }

    /// The Isthmus process, for its metrics.
    pub fn isthmus(&self) -> Option<&Proxy> {
        match self {
            Running::Isthmus(p) => Some(p),
            Running::Envoy(_) => None,
        }
    }
}
