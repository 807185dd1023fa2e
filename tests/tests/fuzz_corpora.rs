//! Every fuzz corpus (`fuzz/corpus/<target>/`, grown by `scripts/fuzz.sh` on nightly) replayed
//! on stable: every input the fuzzer kept, and every crash it found once fixed, stays a test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = tests::repo_root().join("fuzz/corpus").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 2, "{}: the corpus is missing", dir.display());
    out
}

fn replay(target: &str, f: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "{} fails", path.display());
    }
}

#[test]
fn detect_corpus() {
    replay("detect", proxy::fuzzing::detect_incremental);
}

#[test]
fn config_yaml_corpus() {
    replay("config_yaml", proxy::fuzzing::config_yaml);
}

#[test]
fn config_proto_corpus() {
    replay("config_proto", proxy::fuzzing::config_proto);
}

#[test]
fn xds_response_corpus() {
    replay("xds_response", xds_client::fuzzing::response);
}

#[test]
fn iptables_plan_corpus() {
    replay("iptables_plan", iptables_init::fuzzing::plan);
}

#[test]
fn http_request_corpus() {
    replay("http_request", proxy::fuzzing::http_request);
}
