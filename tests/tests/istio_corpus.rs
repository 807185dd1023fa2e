//! Real istiod output, side by side with Envoy 1.40: every config dump in
//! `tests/fixtures/istio/` (sidecars, gateways, waypoints of Istio 1.18–1.2x; sources in
//! SOURCES.md) is served over ADS as istiod sent it — with the proxy's own bootstrap as
//! pilot-agent wrote it and pilot-agent's flags — to Envoy, and to Isthmus in SotW and in
//! Delta. Everything Envoy accepts, Isthmus must accept too (≥ 98 % over the corpus, the
//! exceptions printed with their NACK messages and listed in the README).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;

use tests::istio::{self, Plane, TYPES};

#[test]
fn isthmus_accepts_what_envoy_accepts_from_real_istiod_output() {
    let dumps = istio::dumps();
    assert!(dumps.len() >= 1, "the corpus is missing: {dumps:?}");
    let (mut envoy_total, mut kept_sotw, mut kept_delta) = (0usize, 0usize, 0usize);
    let mut report = String::new();
    for path in &dumps {
        let c = istio::corpus(path);
        let served: usize = c.resources.values().map(Vec::len).sum();
        let envoy = istio::run(&c, Plane::Envoy, false, &|_| {});
        let sotw = istio::run(&c, Plane::Isthmus, false, &|_| {});
        let delta = istio::run(&c, Plane::Isthmus, true, &|_| {});
        for t in TYPES {
            // Only what was served counts (Envoy also lists the endpoints of CDS-delivered
            // STATIC clusters among its EDS configs).
            let names: BTreeSet<String> = c
                .resources
                .get(t)
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    r.get(if t == istio::EDS { "cluster_name" } else { "name" })
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .collect();
            let e = &envoy.accepted[t].intersection(&names).cloned().collect::<BTreeSet<_>>();
            let missing = |o: &istio::Outcome| e.difference(&o.accepted[t]).cloned().collect::<BTreeSet<_>>();
            let (ms, md) = (missing(&sotw), missing(&delta));
            envoy_total += e.len();
            kept_sotw += e.len() - ms.len();
            kept_delta += e.len() - md.len();
            if !ms.is_empty() || !md.is_empty() {
                report.push_str(&format!(
                    "{} {}: Envoy accepts, Isthmus does not: sotw {ms:?} delta {md:?}\n",
                    c.name,
                    istio::short_type(t)
                ));
            }
        }
        report.push_str(&format!(
            "{}: served {served}; Envoy accepted {}, Isthmus {} (sotw) / {} (delta)\n",
            c.name,
            envoy.accepted.values().map(BTreeSet::len).sum::<usize>(),
            sotw.accepted.values().map(BTreeSet::len).sum::<usize>(),
            delta.accepted.values().map(BTreeSet::len).sum::<usize>(),
        ));
        for n in sotw.nacks.iter().collect::<BTreeSet<_>>() {
            report.push_str(&format!("  isthmus NACK: {n}\n"));
        }
        for n in envoy.nacks.iter().collect::<BTreeSet<_>>() {
            report.push_str(&format!("  envoy NACK: {}\n", n.chars().take(300).collect::<String>()));
        }
    }
    eprintln!("{report}");
    eprintln!("corpus: Envoy accepted {envoy_total}; Isthmus kept {kept_sotw} (sotw), {kept_delta} (delta)");
    assert!(envoy_total > 100, "too small a corpus to judge: {envoy_total}\n{report}");
    for kept in [kept_sotw, kept_delta] {
        assert!(
            kept * 100 >= envoy_total * 98,
            "Isthmus accepts {kept} of the {envoy_total} resources Envoy accepts:\n{report}"
        );
    }
}
