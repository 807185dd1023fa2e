//! Logs: `tracing` to stderr with a level that `/logging?level=` can change at run time.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

type Handle = reload::Handle<EnvFilter, Registry>;

static RELOAD: OnceLock<Handle> = OnceLock::new();

/// Envoy's level names mapped to tracing's (`critical` and `off` included).
pub fn filter_for(level: &str) -> Option<EnvFilter> {
    let l = match level {
        "trace" | "debug" | "info" | "warn" | "error" | "off" => level,
        "warning" => "warn",
        "critical" => "error",
        _ => return None,
    };
    EnvFilter::try_new(format!("{l},access=info")).ok()
}

/// Installs the subscriber once; later calls only change the level.
pub fn init(level: &str) {
    let filter = filter_for(level).unwrap_or_else(|| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(filter);
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry().with(layer).with(fmt).try_init().is_ok() {
        let _ = RELOAD.set(handle);
    }
}

/// Changes the level (admin `/logging?level=`); false for an unknown level name.
pub fn set_level(level: &str) -> bool {
    match (filter_for(level), RELOAD.get()) {
        (Some(f), Some(h)) => h.reload(f).is_ok(),
        _ => false,
    }
}
