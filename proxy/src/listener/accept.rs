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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_told_from_per_connection_errors() {
        assert!(exhausted(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(exhausted(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!exhausted(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
        assert_eq!(kind(&io::Error::from_raw_os_error(libc::ENOBUFS)), "enobufs");
    }
}
