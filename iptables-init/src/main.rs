//! `iptables-init`: installs the pod's traffic-capture rules for the Isthmus sidecar.
//!
//! Not built yet (its own issue): this binary only states that, so an injector that runs it
//! fails loudly instead of silently leaving traffic uncaptured.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("iptables-init: traffic capture is not implemented yet; no rules were written");
    std::process::exit(126);
}
