//! The independent Python control plane (`tests/xds_server/ads_server.py`) as a test peer:
//! commands go in on stdin, events come out on stdout and are awaited one by one.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running control plane; stopped on drop.
pub struct AdsServer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    /// Every event seen so far, for failure messages.
    pub seen: Vec<Value>,
    /// Events read but not yet matched by a `wait`, oldest first.
    backlog: std::collections::VecDeque<Value>,
    /// TCP port.
    pub port: u16,
}

impl AdsServer {
    /// The server's process id (tests freeze it with SIGSTOP to play a control plane that
    /// stops answering without closing its connections).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the server on a free port and waits for its `listening` event.
    pub fn start() -> AdsServer {
        Self::start_on(0)
    }

    /// Starts the server on `port` (0: any).
    pub fn start_on(port: u16) -> AdsServer {
        Self::start_prefixed(port, &[])
    }

    /// Starts the server over TLS with `cert`/`key` (PEM files), requiring client certificates
    /// from `client_ca`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, client_ca: &std::path::Path) -> AdsServer {
        let args = [
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
            "--tls-client-ca".to_string(),
            client_ca.display().to_string(),
        ];
        Self::launch(0, &[], &args)
    }

    /// Starts the server on a free port and also on the Unix socket `socket` (istio-agent's
    /// SDS/XDS socket shape; it serves ADS and `SecretDiscoveryService`).
    pub fn start_unix(socket: &std::path::Path) -> AdsServer {
        Self::launch(0, &[], &["--unix".to_string(), socket.display().to_string()])
    }

    /// Starts the server with extra command-line arguments (e.g. `--unix PATH --all-types`).
    pub fn start_args(args: &[String]) -> AdsServer {
        Self::launch(0, &[], args)
    }

    /// Starts the server through a command prefix (e.g. `ip netns exec NS`).
    pub fn start_prefixed(port: u16, prefix: &[String]) -> AdsServer {
        Self::launch(port, prefix, &[])
    }

    fn launch(port: u16, prefix: &[String], extra: &[String]) -> AdsServer {
        let script = crate::repo_root().join("tests/xds_server/ads_server.py");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(crate::python());
                c
            }
            None => Command::new(crate::python()),
        };
        let mut child = cmd
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ads_server.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut s = AdsServer { child, stdin, events, seen: Vec::new(), backlog: Default::default(), port: 0 };
        let l = s.wait(|e| e["event"] == "listening");
        s.port = l["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("port");
        s
    }

    /// Sends a command and waits for its `ok`.
    pub fn cmd(&mut self, c: Value) {
        let name = c["cmd"].as_str().expect("cmd name").to_string();
        writeln!(self.stdin, "{c}").expect("write command");
        self.stdin.flush().expect("flush");
        let r = self.wait(|e| (e["event"] == "ok" || e["event"] == "error") && e["cmd"] == name.as_str());
        assert_eq!(r["event"], "ok", "command {c} failed: {r}");
    }

    /// `set` a snapshot.
    pub fn set(&mut self, type_url: &str, version: &str, resources: Vec<Value>) {
        self.cmd(json!({"cmd": "set", "type": type_url, "version": version, "resources": resources}));
    }

    /// `push` a type with a given nonce.
    pub fn push(&mut self, type_url: &str, nonce: &str) {
        self.cmd(json!({"cmd": "push", "type": type_url, "nonce": nonce}));
    }

    /// Waits (10 s at most) for the oldest event matching `f`. Events that do not match stay
    /// queued for later waits, so an event that arrives while a command is in progress is
    /// not lost.
    pub fn wait(&mut self, f: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(Duration::from_secs(10), f)
    }

    /// [`AdsServer::wait`] with a custom limit.
    pub fn wait_for(&mut self, limit: Duration, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&f) {
            if let Some(e) = self.backlog.remove(i) {
                return e;
            }
        }
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if f(&e) {
                        return e;
                    }
                    self.backlog.push_back(e);
                }
                Err(_) => panic!("no matching control-plane event within {limit:?}; seen:\n{}", self.dump()),
            }
        }
    }

    /// The next event if one has arrived, without waiting (it stays queued for later waits).
    pub fn try_next(&mut self) -> Option<Value> {
        let e = self.events.try_recv().ok()?;
        self.seen.push(e.clone());
        self.backlog.push_back(e.clone());
        Some(e)
    }

    /// Waits for a request event of `type_url` matching `f`.
    pub fn request(&mut self, type_url: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.wait(|e| e["event"] == "request" && e["type"] == type_url && f(e))
    }

    fn dump(&self) -> String {
        self.seen.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for AdsServer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "stop"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
