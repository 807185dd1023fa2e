//! Fuzz harnesses: one function per target, shared by `fuzz/` (cargo-fuzz, nightly) and the
//! corpus replay tests that run on stable in CI, so a crash the fuzzer found stays a test.
//! Each takes arbitrary bytes, must not panic, and checks the invariants its code promises.

use prost::Message;
use xds_client::protos::envoy::config::{cluster::v3::Cluster, listener::v3::Listener, route::v3::RouteConfiguration};

use crate::config::convert;
use crate::config::error::Path;
use crate::detect::{detect, Detected, Detector, MAX_PEEK};

/// The first-bytes detector: fed in chunks whose sizes the input picks, it must give what the
/// whole-buffer function gives, and a decision must stand as more bytes arrive.
pub fn detect_incremental(data: &[u8]) {
    let Some((&step, input)) = data.split_first() else { return };
    let step = usize::from(step.max(1));
    let mut d = Detector::default();
    let mut n = 0;
    let mut decided = None;
    while n < input.len() {
        n = (n + step).min(input.len());
        let prefix = input.get(..n).unwrap_or_default();
        let got = d.feed(prefix);
        if got != Detected::NeedMore {
            assert_eq!(got, detect(prefix), "incremental and whole disagree at {n} bytes");
            decided = Some(got);
            break;
        }
    }
    if let Some(got) = decided {
        if input.len() <= MAX_PEEK {
            assert_eq!(detect(input), got, "a decision changed when more bytes arrived");
        }
    }
}

/// The bootstrap loader: any text, YAML or JSON, converts or fails with an error.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(doc) = crate::config::load::parse(text, "fuzz") {
        let _ = crate::config::load::from_value(doc, "fuzz");
    }
}

/// Conversion of xDS resources: any bytes decoded as a Listener, Cluster or
/// RouteConfiguration (the first byte picks) convert or fail with an error.
pub fn config_proto(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else { return };
    let res = convert::Resources::lenient();
    match kind % 3 {
        0 => {
            if let Ok(l) = Listener::decode(bytes) {
                let _ = convert::listener(&l, &Path::root("listener"), &res);
            }
        }
        1 => {
            if let Ok(c) = Cluster::decode(bytes) {
                let _ = convert::cluster(&c, &Path::root("cluster"));
            }
        }
        _ => {
            if let Ok(rc) = RouteConfiguration::decode(bytes) {
                let _ = convert::route_config(&rc, &Path::root("route"), &res);
            }
        }
    }
}
