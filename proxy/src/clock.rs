//! The proxy's one clock: the runtime's (`tokio::time::Instant`), so paused-clock tests control
//! every timeout, ejection time and back-off; handed out as a `std` instant for the code that
//! stores or compares instants. `proxy/clippy.toml` bans `std::time::Instant::now` elsewhere.

use std::time::Instant;

/// The current time as the runtime's clock tells it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
