//! The real `isthmus` process under test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running proxy; killed on drop.
pub struct Proxy {
    child: crate::child::KillOnDrop,
    listeners: HashMap<String, SocketAddr>,
    /// Admin address.
    pub admin: SocketAddr,
    /// Everything the proxy wrote to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Everything written to stdout (access logs).
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// One message from each pipe reader when it has read its pipe to the end, so that
    /// [`Proxy::wait_exit`] returns only once `stdout` and `stderr` hold everything written.
    pipes_drained: std::sync::mpsc::Receiver<()>,
}

impl Proxy {
    /// Starts `isthmus -c <file>` with `yaml` and waits until it logs its listeners and admin
    /// address (it logs them after binding, right before it reports ready).
    pub fn start(yaml: &str) -> Proxy {
        Self::start_with(yaml, &[])
    }

    /// Same, with extra command-line flags.
    pub fn start_with(yaml: &str, args: &[&str]) -> Proxy {
        Self::launch(yaml, args, true)
    }

    /// Starts and returns once admin is up, without waiting for readiness (xDS warming).
    pub fn start_unready(yaml: &str) -> Proxy {
        Self::launch(yaml, &[], false)
    }

    fn launch(yaml: &str, args: &[&str], wait_ready: bool) -> Proxy {
        Self::launch_with_prefix(yaml, args, wait_ready, &[])
    }

    /// Starts the proxy through a command prefix (e.g. `ip netns exec NS setpriv …`) and waits
    /// for readiness.
    pub fn start_prefixed(yaml: &str, prefix: &[String]) -> Proxy {
        Self::launch_with_prefix(yaml, &[], true, prefix)
    }

    /// [`Proxy::start_prefixed`] with extra flags.
    pub fn start_prefixed_args(yaml: &str, prefix: &[String], args: &[&str]) -> Proxy {
        Self::launch_with_prefix(yaml, args, true, prefix)
    }

    fn launch_with_prefix(yaml: &str, args: &[&str], wait_ready: bool, prefix: &[String]) -> Proxy {
        let path = crate::scratch("bootstrap.yaml");
        std::fs::write(&path, yaml).expect("write bootstrap");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(crate::isthmus_bin());
                c
            }
            None => Command::new(crate::isthmus_bin()),
        };
        let mut child = cmd
            .arg("-c")
            .arg(&path)
            .args(["-l", "info", "--concurrency", "2"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(crate::child::KillOnDrop)
            .expect("spawn isthmus");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (drained_tx, pipes_drained) = std::sync::mpsc::channel::<()>();
        let err_pipe = child.stderr.take().expect("stderr");
        let err_lines = stderr.clone();
        let err_drained = drained_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                err_lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
            let _ = err_drained.send(());
        });
        let out_pipe = child.stdout.take().expect("stdout");
        let out_lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                out_lines.lock().unwrap().push(line);
            }
            let _ = drained_tx.send(());
        });
        let mut listeners = HashMap::new();
        let mut admin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!("isthmus did not become ready; stderr:\n{}", stderr.lock().unwrap().join("\n")),
            };
            if line.contains("admin listening") {
                admin = admin.or_else(|| field(&line, "addr").and_then(|a| a.parse().ok()));
                if !wait_ready {
                    break;
                }
            } else if line.contains(" listening ") {
                if let (Some(n), Some(a)) = (field(&line, "listener"), field(&line, "addr")) {
                    listeners.insert(n, a.parse().expect("listener addr"));
                }
            } else if line.contains(" ready ") {
                break;
            }
        }
        Proxy { child, listeners, admin: admin.expect("admin addr"), stderr, stdout, pipes_drained }
    }

    /// A listener's bound address.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self.listeners.get(name).unwrap_or_else(|| panic!("no listener {name}: {:?}", self.listeners))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(ok.success());
    }

    /// Waits for exit, up to `limit`, and then for the pipe readers to reach the end of
    /// stdout and stderr: a process that has exited may still have lines in its pipes that
    /// the reader threads have not pushed yet (CI once saw an empty access log this way).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                for _pipe in 0..2 {
                    let left = end.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
                    self.pipes_drained.recv_timeout(left).unwrap_or_else(|e| {
                        panic!("isthmus exited but its stdout/stderr were not read to the end: {e}")
                    });
                }
                return s;
            }
            assert!(Instant::now() < end, "isthmus did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GETs an admin path.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get_blocking(self.admin, path).expect("admin request")
    }

    /// The sum of the samples of `name` whose labels contain every `labels` part (label
    /// order does not matter).
    pub fn metric_with(&self, name: &str, labels: &[&str]) -> f64 {
        let (_, text) = self.admin_get("/stats/prometheus");
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| labels.iter().all(|p| l.contains(p)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The sum of Prometheus samples named `name` whose line contains `label_part`.
    pub fn metric(&self, name: &str, label_part: &str) -> f64 {
        self.metric_with(name, &[label_part])
    }
}

/// `key=value` from a tracing line.
fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let start = line.find(&pat)? + pat.len();
    Some(line[start..].split_whitespace().next()?.trim_matches('"').to_string())
}

/// Runs `isthmus` with `args` to completion (validation, bad configs, demo); a run that
/// outlives 60 s is killed and fails the test instead of hanging the suite.
pub fn run(args: &[&str]) -> std::process::Output {
    let child = Command::new(crate::isthmus_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run isthmus");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("isthmus output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("isthmus {args:?} did not exit within 60 s");
        }
    }
}

/// A plain HTTP/1.1 GET (`Connection: close`) over std (admin pages, from any context); status and body.
pub fn http_get_blocking(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    // A peer that accepts and never answers fails this poll instead of hanging the test.
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok())?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Some((status, if chunked { dechunk(body)? } else { body.to_string() }))
}

/// Decodes a chunked body.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n + 2..)?;
    }
}
