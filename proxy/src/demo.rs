//! `isthmus demo`: the README's first command. Starts three local upstreams and the proxy on
//! an embedded Envoy config (one cluster, weighted endpoints in two localities), drives a
//! bounded fixed-rate load through it, and prints a per-second table.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::app::{self, Options};
use crate::config::load;

const UPSTREAMS: [(&str, u32); 3] = [("hangzhou-a", 2), ("hangzhou-b", 1), ("beijing-a", 1)];

/// Runs the demo; exit code 0 when every request succeeded.
pub async fn run(seconds: u64, rate: u64) -> ExitCode {
    let mut addrs = Vec::new();
    for (name, _) in UPSTREAMS {
        match upstream(name).await {
            Ok(a) => addrs.push(a),
            Err(e) => {
                eprintln!("demo: cannot start upstream {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let yaml = config(&addrs);
    println!("--- embedded config ---\n{yaml}-----------------------");
    let bootstrap = match load::parse(&yaml, "demo").and_then(|v| load::from_value(v, "demo")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match app::start(bootstrap, Options { drain_time: Duration::from_secs(2), readiness: None }).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(proxy) = running.listener("ingress") else { return ExitCode::FAILURE };
    println!("proxy on http://{proxy}  admin on {:?}  ({rate} req/s for {seconds}s)\n", running.admin);
    let failures = drive(proxy, seconds, rate.max(1)).await;
    running.drain().await;
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn config(addrs: &[SocketAddr]) -> String {
    let mut eps = String::new();
    for ((name, weight), addr) in UPSTREAMS.iter().zip(addrs) {
        let (region, zone) = name.split_once('-').unwrap_or((name, ""));
        eps.push_str(&format!(
            "      - locality: {{region: {region}, zone: {region}-{zone}}}\n        lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}, hostname: {name}}}\n          load_balancing_weight: {weight}\n",
            addr.ip(),
            addr.port()
        ));
    }
    format!(
        r#"node: {{id: demo, cluster: demo-gateway, locality: {{region: hangzhou}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: web
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: web, timeout: 2s, retry_policy: {{retry_on: "5xx,connect-failure", num_retries: 2}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: web
    connect_timeout: 0.25s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: web
      endpoints:
{eps}"#
    )
}

async fn upstream(name: &'static str) -> std::io::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    let mut r = hyper::Response::new(Full::new(Bytes::from(name)));
                    r.headers_mut().insert("x-upstream", hyper::header::HeaderValue::from_static(name));
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    Ok(addr)
}

/// Fixed-rate load; prints one row per second. Returns the number of failed requests.
async fn drive(proxy: SocketAddr, seconds: u64, rate: u64) -> u64 {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Option<String>, Duration)>();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    let total = seconds * rate;
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        for i in 0..total {
            tick.tick().await;
            let (c, tx) = (client.clone(), tx.clone());
            let uri = format!("http://{proxy}/demo/{i}");
            tokio::spawn(async move {
                let t0 = Instant::now();
                let who = match uri.parse() {
                    Ok(u) => match c.get(u).await {
                        Ok(r) if r.status().is_success() => {
                            let who = r.headers().get("x-upstream").and_then(|v| v.to_str().ok()).map(str::to_string);
                            let _ = r.into_body().collect().await;
                            who
                        }
                        _ => None,
                    },
                    Err(_) => None,
                };
                let sec = t0.duration_since(start).as_secs();
                let _ = tx.send((sec, who, t0.elapsed()));
            });
        }
    });
    println!("{:>4} {:>6} {:>6} {:>9} {:>9}  share by upstream", "sec", "reqs", "fail", "p50 ms", "p99 ms");
    let mut failures = 0;
    let mut sec = 0;
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).ok();
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let (mut n, mut f) = (0u64, 0u64);
    let flush =
        |sec: u64, n: u64, f: u64, hist: &mut Option<hdrhistogram::Histogram<u64>>, by: &mut BTreeMap<String, u64>| {
            let (p50, p99) = hist.as_ref().map_or((0.0, 0.0), |h| {
                (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
            });
            let share: Vec<String> =
                by.iter().map(|(k, v)| format!("{k} {:.0}%", *v as f64 * 100.0 / n.max(1) as f64)).collect();
            println!("{sec:>4} {n:>6} {f:>6} {p50:>9.2} {p99:>9.2}  {}", share.join("  "));
            if let Some(h) = hist.as_mut() {
                h.reset();
            }
            by.clear();
        };
    while let Some((s, who, lat)) = rx.recv().await {
        if s != sec {
            flush(sec, n, f, &mut hist, &mut by);
            sec = s;
            n = 0;
            f = 0;
        }
        n += 1;
        match who {
            Some(w) => *by.entry(w).or_default() += 1,
            None => {
                f += 1;
                failures += 1;
            }
        }
        if let Some(h) = hist.as_mut() {
            let _ = h.record(u64::try_from(lat.as_micros()).unwrap_or(u64::MAX));
        }
    }
    flush(sec, n, f, &mut hist, &mut by);
    let _ = sender.await;
    println!("\n{} requests, {failures} failed; weights 2:1:1 give 50% / 25% / 25%", total);
    failures
}
