//! Accepting without spinning: an accept error caused by exhausted resources (out of file
//! descriptors, kernel buffers or memory) backs off exponentially instead of retrying at once,
//! and no error ends the accept loop. Envoy and ztunnel do the same: a process at its
//! descriptor limit keeps serving the connections it has and accepts again once some close.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use metrics::counter;
use tokio::net::{TcpListener, TcpStream};

/// The first pause after a resource-exhaustion error.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Why an accept failed, as a bounded metric label.
fn kind(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => "emfile",
        Some(libc::ENFILE) => "enfile",
        Some(libc::ENOBUFS) => "enobufs",
        Some(libc::ENOMEM) => "enomem",
        _ => "other",
    }
}

/// Whether retrying at once would fail the same way (a resource is exhausted), as opposed to
/// an error about the one connection being accepted (`ECONNABORTED`, a firewall's `EPERM`).
fn exhausted(e: &io::Error) -> bool {
    kind(e) != "other"
}

/// Accept errors of one listener, counted and paced.
#[derive(Debug)]
pub struct Acceptor {
    listener: String,
    pause: Duration,
}

impl Acceptor {
    /// Pacing for the listener named `listener` (the metric label).
    pub fn new(listener: impl Into<String>) -> Acceptor {
        Acceptor { listener: listener.into(), pause: FIRST_PAUSE }
    }

    /// The next connection; errors are counted (`isthmus_accept_errors_total{listener,kind}`)
    /// and, when a resource is exhausted, waited out with a doubling pause (5 ms … 1 s).
    pub async fn accept(&mut self, l: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match l.accept().await {
                Ok(c) => {
                    self.pause = FIRST_PAUSE;
                    return c;
                }
                Err(e) => {
                    counter!("isthmus_accept_errors_total", "listener" => self.listener.clone(), "kind" => kind(&e))
                        .increment(1);
                    if exhausted(&e) {
                        tracing::warn!(listener = %self.listener, error = %e, pause_ms = self.pause.as_millis() as u64, "accept failed; backing off");
                        tokio::time::sleep(self.pause).await;
                        self.pause = (self.pause * 2).min(MAX_PAUSE);
                    } else {
                        tracing::debug!(listener = %self.listener, error = %e, "accept failed");
                    }
                }
            }
        }
    }
}

/// The process-wide bound on open downstream connections (Envoy's overload manager
/// `global_downstream_max_connections`): a slot per connection, released when it ends.
#[derive(Debug, Default)]
pub struct ConnectionLimit {
    max: Option<u64>,
    open: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// One open connection's place under the limit.
#[derive(Debug)]
pub struct Slot(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ConnectionLimit {
    /// A limit of `max` open connections (`None`: no limit, only counting).
    pub fn new(max: Option<u64>) -> ConnectionLimit {
        ConnectionLimit { max, open: Default::default() }
    }

    /// A slot, or `None` when `max` connections are open.
    pub fn admit(&self) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        let prev = self.open.fetch_add(1, Ordering::Relaxed);
        if self.max.is_some_and(|m| prev >= m) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.open.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_admits_up_to_max_and_frees_on_drop() {
        let l = ConnectionLimit::new(Some(2));
        let a = l.admit().unwrap();
        let _b = l.admit().unwrap();
        assert!(l.admit().is_none());
        drop(a);
        assert!(l.admit().is_some());
        assert!(ConnectionLimit::new(None).admit().is_some());
    }

    #[test]
    fn exhaustion_is_told_from_per_connection_errors() {
        assert!(exhausted(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(exhausted(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!exhausted(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
        assert_eq!(kind(&io::Error::from_raw_os_error(libc::ENOBUFS)), "enobufs");
    }
}
