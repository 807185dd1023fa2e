//! `isthmus demo`: the README's first command — the seed scenario. Six local upstreams stand
//! in for three localities (`cn-beijing/a` here, `cn-beijing/b` a zone away, `cn-hangzhou/a`
//! a region away, with simulated link latency); the proxy runs in `cn-beijing/a` on an
//! embedded Envoy config with outlier detection, retries and a failover list. A bounded
//! fixed-rate load runs through it; a quarter of the way in the local zone starts failing,
//! half way it recovers. The per-second table shows traffic moving to the nearest healthy
//! locality and coming home (that row is marked), with errors and p99; the run fails if any
//! request failed or traffic never came home. Every request is traced (Zipkin, to a collector
//! inside the demo): the failed-over requests are listed with their trace ids and where their
//! time went.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::app::{self, Options};
use crate::clock::now;
use crate::config::load;

/// (name, region, zone, simulated one-way link latency in ms).
const UPSTREAMS: [(&str, &str, &str, u64); 6] = [
    ("beijing-a-1", "cn-beijing", "cn-beijing-a", 0),
    ("beijing-a-2", "cn-beijing", "cn-beijing-a", 0),
    ("beijing-b-1", "cn-beijing", "cn-beijing-b", 2),
    ("beijing-b-2", "cn-beijing", "cn-beijing-b", 2),
    ("hangzhou-a-1", "cn-hangzhou", "cn-hangzhou-a", 15),
    ("hangzhou-a-2", "cn-hangzhou", "cn-hangzhou-a", 15),
];

/// Runs the demo; exit code 0 when every request succeeded.
pub async fn run(seconds: u64, rate: u64) -> ExitCode {
    let failing = Arc::new(AtomicBool::new(false));
    let mut addrs = Vec::new();
    for (name, _, zone, latency) in UPSTREAMS {
        let fail = (zone == "cn-beijing-a").then(|| failing.clone());
        match upstream(name, Duration::from_millis(latency), fail).await {
            Ok(a) => addrs.push(a),
            Err(e) => {
                eprintln!("demo: cannot start upstream {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let traces = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let collector = match collector(traces.clone()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: cannot start the trace collector: {e}");
            return ExitCode::FAILURE;
        }
    };
    let yaml = config(&addrs, collector);
    println!("--- embedded config ---\n{yaml}-----------------------");
    let snapshot =
        match load::parse(&yaml, "demo").and_then(|v| load::from_value(v, "demo")).and_then(crate::build::snapshot) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("demo: {e}");
                return ExitCode::FAILURE;
            }
        };
    let running = match app::start(
        snapshot,
        Options { drain_time: Duration::from_secs(2), readiness: None, command_line: serde_json::Value::Null },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(proxy) = running.listener("ingress") else { return ExitCode::FAILURE };
    println!("proxy on http://{proxy}  admin on {:?}  ({rate} req/s for {seconds}s)\n", running.admin);
    let (failures, home, failed_over) = drive(proxy, seconds.max(4), rate.max(1), failing).await;
    running.drain().await;
    print_traces(&failed_over, &traces);
    if !home {
        eprintln!("demo: traffic did not come home to cn-beijing-a after it recovered");
    }
    if failures == 0 && home {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn config(addrs: &[SocketAddr], collector: SocketAddr) -> String {
    let mut eps = String::new();
    for zone in ["cn-beijing-a", "cn-beijing-b", "cn-hangzhou-a"] {
        let region = zone.rsplit_once('-').map_or(zone, |(r, _)| r);
        eps.push_str(&format!("      - locality: {{region: {region}, zone: {zone}}}\n        lb_endpoints:\n"));
        for ((name, _, z, _), addr) in UPSTREAMS.iter().zip(addrs) {
            if *z == zone {
                eps.push_str(&format!(
                    "        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}, hostname: {name}}}\n",
                    addr.ip(),
                    addr.port()
                ));
            }
        }
    }
    format!(
        r#"node: {{id: demo, cluster: demo-gateway, locality: {{region: cn-beijing, zone: cn-beijing-a}}}}
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
          # Every request traced (a demo; meshes sample 1 %): B3 to the upstreams, Zipkin v2
          # spans to the collector inside the demo.
          tracing:
            random_sampling: {{value: 100}}
            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: traces
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON
          route_config:
            virtual_hosts:
            - name: payments
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: payments
                  timeout: 5s
                  retry_policy:
                    retry_on: 5xx,connect-failure
                    num_retries: 10
                    retry_back_off: {{base_interval: 0.002s, max_interval: 0.02s}}
                    retry_host_predicate: [{{name: envoy.retry_host_predicates.previous_hosts}}]
                    host_selection_retry_max_attempts: 5
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: traces
    type: STATIC
    load_assignment: {{cluster_name: traces, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {cip}, port_value: {cport}}}}}}}}}]}}]}}
  - name: payments
    connect_timeout: 0.25s
    type: STATIC
    lb_policy: LEAST_REQUEST
    circuit_breakers: {{thresholds: [{{max_retries: 1000}}]}}
    # Ejected hosts are back within a second of the ejection time (max_ejection_time caps the
    # back-off of a host ejected again while still failing), so the story fits in the run.
    outlier_detection: {{consecutive_5xx: 5, interval: 1s, base_ejection_time: 1s, max_ejection_time: 2s, max_ejection_percent: 100}}
    # Every endpoint arrives at priority 0; the proxy computes its own failover order:
    # own zone first, then the same region, then the failover target region.
    metadata: {{filter_metadata: {{isthmus.io/locality_lb: {{failover: [{{from: cn-beijing, to: cn-hangzhou}}]}}}}}}
    load_assignment:
      cluster_name: payments
      endpoints:
{eps}"#,
        cip = collector.ip(),
        cport = collector.port(),
    )
}

/// Trace id → the span's duration in µs, as the collector got it.
type Traces = Arc<std::sync::Mutex<BTreeMap<String, u64>>>;

/// A Zipkin v2 collector endpoint (`POST /api/v2/spans`) keeping each span's duration.
async fn collector(traces: Traces) -> std::io::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let traces = traces.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let traces = traces.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let spans: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
                        let mut t = traces.lock().unwrap_or_else(|p| p.into_inner());
                        for s in spans {
                            if let (Some(id), Some(d)) = (s["traceId"].as_str(), s["duration"].as_u64()) {
                                t.insert(id.to_string(), d);
                            }
                        }
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::ACCEPTED;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    Ok(addr)
}

/// Lists a few failed-over requests with their trace ids and the span's duration as the
/// collector got it: the proxy's own view of where the time went (retries included).
fn print_traces(failed_over: &[(String, String, Duration)], traces: &Traces) {
    let t = traces.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "
{} spans reached the trace collector. Failed-over requests, by trace:",
        t.len()
    );
    let picks = failed_over.iter().step_by((failed_over.len() / 5).max(1)).take(5);
    for (trace, who, lat) in picks {
        let span = t
            .get(trace)
            .map_or("(span not flushed yet)".to_string(), |d| format!("proxy span {:.2} ms", *d as f64 / 1000.0));
        println!("  trace {trace}  served by {who:<13} client saw {:.2} ms, {span}", lat.as_secs_f64() * 1000.0);
    }
}

async fn upstream(
    name: &'static str,
    latency: Duration,
    failing: Option<Arc<AtomicBool>>,
) -> std::io::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let failing = failing.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let failing = failing.clone();
                    // The trace the proxy put the call in, echoed so the demo can list it.
                    let trace = req.headers().get("x-b3-traceid").cloned();
                    async move {
                        if !latency.is_zero() {
                            // The link's round trip, simulated in user space (no netem here).
                            tokio::time::sleep(latency * 2).await;
                        }
                        let fail = failing.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
                        let mut r = hyper::Response::new(Full::new(Bytes::from(name)));
                        if fail {
                            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        r.headers_mut().insert("x-upstream", hyper::header::HeaderValue::from_static(name));
                        if let Some(t) = trace {
                            r.headers_mut().insert("x-b3-traceid", t);
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    Ok(addr)
}

/// One second of results.
struct Second {
    n: u64,
    f: u64,
    hist: Option<hdrhistogram::Histogram<u64>>,
    by: BTreeMap<String, u64>,
}

impl Second {
    fn new() -> Second {
        Second { n: 0, f: 0, hist: hdrhistogram::Histogram::<u64>::new(3).ok(), by: BTreeMap::new() }
    }
}

/// Fixed-rate load; prints one row per second. Returns the number of failed requests and
/// whether traffic came home (≥ 95 % on the own zone in a second after the recovery).
async fn drive(
    proxy: SocketAddr,
    seconds: u64,
    rate: u64,
    failing: Arc<AtomicBool>,
) -> (u64, bool, Vec<(String, String, Duration)>) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Option<(String, String)>, Duration)>();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = now();
    let total = seconds * rate;
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        for i in 0..total {
            tick.tick().await;
            let (c, tx) = (client.clone(), tx.clone());
            let uri = format!("http://{proxy}/demo/{i}");
            tokio::spawn(async move {
                let t0 = now();
                let who = match uri.parse() {
                    Ok(u) => match c.get(u).await {
                        Ok(r) if r.status().is_success() => {
                            let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                            let who = h("x-upstream").map(|w| (w, h("x-b3-traceid").unwrap_or_default()));
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
    let (fail_at, heal_at) = (seconds / 4, seconds / 2);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(fail_at)).await;
        failing.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(heal_at - fail_at)).await;
        failing.store(false, Ordering::Relaxed);
    });
    println!("{:>4} {:>6} {:>6} {:>9} {:>9}  share by locality", "sec", "reqs", "fail", "p50 ms", "p99 ms");
    let mut failures = 0;
    let mut failed_over = Vec::new();
    let mut home_at: Option<u64> = None;
    // Results arrive in completion order; a second is printed once results two seconds later
    // arrive (every request here takes well under a second), so late answers land in their row.
    let mut open: BTreeMap<u64, Second> = BTreeMap::new();
    let mut print = |sec: u64, row: &Second| {
        let (p50, p99) = row.hist.as_ref().map_or((0.0, 0.0), |h| {
            (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
        });
        let share = |k: &str| row.by.get(k).copied().unwrap_or(0) as f64 * 100.0 / row.n.max(1) as f64;
        let shares: Vec<String> =
            ["beijing-a", "beijing-b", "hangzhou-a"].iter().map(|k| format!("{k} {:>3.0}%", share(k))).collect();
        let came_home = home_at.is_none() && sec > heal_at && row.n > 0 && share("beijing-a") >= 95.0;
        if came_home {
            home_at = Some(sec);
        }
        let note = if sec == fail_at {
            "  <- local zone starts failing"
        } else if sec == heal_at {
            "  <- local zone recovers"
        } else if came_home {
            "  <- traffic is home again"
        } else {
            ""
        };
        println!("{sec:>4} {:>6} {:>6} {p50:>9.2} {p99:>9.2}  {}{note}", row.n, row.f, shares.join("  "));
    };
    while let Some((s, who, lat)) = rx.recv().await {
        while open.first_key_value().is_some_and(|(first, _)| first + 2 <= s) {
            if let Some((sec, row)) = open.pop_first() {
                print(sec, &row);
            }
        }
        let row = open.entry(s).or_insert_with(Second::new);
        row.n += 1;
        match who {
            Some((w, trace)) => {
                if !w.starts_with("beijing-a") {
                    failed_over.push((trace, w.clone(), lat));
                }
                *row.by.entry(w.rsplit_once('-').map_or(w.clone(), |(z, _)| z.to_string())).or_default() += 1
            }
            None => {
                row.f += 1;
                failures += 1;
            }
        }
        if let Some(h) = row.hist.as_mut() {
            let _ = h.record(u64::try_from(lat.as_micros()).unwrap_or(u64::MAX));
        }
    }
    for (sec, row) in &open {
        print(*sec, row);
    }
    let _ = sender.await;
    let home = home_at.is_some();
    println!(
        "\n{total} requests, {failures} failed. The own zone serves everything while healthy; when it fails, its hosts \
         are ejected after 5 errors each (retries hide them) and traffic moves to the same region's other zone, \
         not to hangzhou; once it recovers and the ejection time has passed, it comes home{}.",
        home_at.map_or(" (it did not, this run)".to_string(), |s| format!(" (second {s})"))
    );
    (failures, home, failed_over)
}
