//! OpenSSL's command-line tools as independent TLS peers (spec §6.3): `s_client` one-shot
//! with a hard time limit, an interactive `s_client` kept open, and `s_server` on a free
//! port whose output lines the test can wait on. Every wait is bounded; every child is
//! killed on drop.
//!
//! `s_server`/`s_client` write their diagnostics through stdio, which is block-buffered
//! on a pipe; the long-running ones are started under `stdbuf -oL -eL` so each line is seen
//! as it is printed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a one-shot `s_client` may run before it is killed.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(10);

/// Output lines of a child, collected by a background thread, that can be waited on.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<LinesState>, Condvar)>);

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    closed: bool,
}

impl Lines {
    /// Follows `pipe` until EOF (lossy UTF-8: application data may be binary).
    pub fn follow(pipe: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                        let (m, c) = &*l.0;
                        m.lock().unwrap().lines.push(line);
                        c.notify_all();
                    }
                }
            }
            let (m, c) = &*l.0;
            m.lock().unwrap().closed = true;
            c.notify_all();
        });
        lines
    }

    /// Every line so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().lines.clone()
    }

    /// Every line so far, joined with `\n`.
    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    /// Whether any line so far contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.0 .0.lock().unwrap().lines.iter().any(|l| l.contains(needle))
    }

    /// Whether the pipe reached EOF (the child closed it or exited).
    pub fn closed(&self) -> bool {
        self.0 .0.lock().unwrap().closed
    }

    /// Waits (on the reader's notifications, no polling) until `pred` holds for the lines,
    /// or `limit` passes, or the pipe closes without it; returns whether it held.
    pub fn wait_until(&self, limit: Duration, mut pred: impl FnMut(&[String]) -> bool) -> bool {
        let end = Instant::now() + limit;
        let (m, c) = &*self.0;
        let mut st = m.lock().unwrap();
        loop {
            if pred(&st.lines) {
                return true;
            }
            let now = Instant::now();
            if st.closed || now >= end {
                return false;
            }
            st = c.wait_timeout(st, end - now).unwrap().0;
        }
    }

    /// Waits until a line contains `needle` (see [`Lines::wait_until`]).
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        self.wait_until(limit, |ls| ls.iter().any(|l| l.contains(needle)))
    }
}

/// Runs `cmd` with `stdin` written and then closed; a run that outlives `limit` is killed
/// (SIGKILL) and its partial output returned (the status then reports the signal).
pub fn run_bounded(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    std::thread::spawn(move || {
        let _ = input.write_all(&data);
        // dropped here: EOF on the child's stdin
    });
    let read_all = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = p.read_to_end(&mut v);
            v
        })
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            rx.recv_timeout(Duration::from_secs(10)).expect("killed child reaped").unwrap()
        }
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// `openssl s_client <args>` with `stdin` written then closed, killed after `limit`.
/// Pass `-ign_eof` to keep reading after stdin's EOF until the server closes.
pub fn s_client(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut cmd = Command::new(crate::tool("openssl"));
    cmd.arg("s_client").args(args);
    run_bounded(cmd, stdin, limit)
}

/// Whether `s_client`'s output shows a completed handshake that the server did not then
/// abort: a "New, TLSv1.x" session line and no alert received. (With TLS 1.3 the client
/// prints its session before the server has checked the client certificate; a rejected
/// certificate shows up as a received alert, e.g. `alert certificate required`.)
pub fn handshake_ok(stdout: &str, stderr: &str) -> bool {
    stdout.contains("New, TLSv1") && !stderr.contains("SSL alert number") && !stdout.contains("SSL alert number")
}

/// One exchange: `s_client -connect addr -ign_eof <args>`, `stdin` sent, read until the server
/// closes (at most [`CLIENT_LIMIT`]); returns (handshake_ok, stdout, stderr).
pub fn tls_exchange(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let a = addr.to_string();
    let mut all = vec!["-connect", a.as_str(), "-ign_eof"];
    all.extend_from_slice(args);
    let out = s_client(&all, stdin, CLIENT_LIMIT);
    let (so, se) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    (handshake_ok(&so, &se), so, se)
}

/// The certificate a TLS server at `addr` presents for `servername` (empty: no SNI):
/// `s_client -showcerts </dev/null | openssl x509 -noout -ext subjectAltName -serial`.
/// Returns (SAN list as printed, e.g. `URI:spiffe://…, DNS:x`; serial in upper-case hex),
/// or two empty strings when no certificate came back.
pub fn peer_san_and_serial(addr: SocketAddr, servername: &str, extra: &[&str]) -> (String, String) {
    let a = addr.to_string();
    let mut args = vec!["-connect", a.as_str(), "-showcerts"];
    if servername.is_empty() {
        args.push("-noservername");
    } else {
        args.extend(["-servername", servername]);
    }
    args.extend_from_slice(extra);
    let out = s_client(&args, b"", CLIENT_LIMIT);
    if !String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE") {
        return (String::new(), String::new());
    }
    let mut x509 = Command::new(crate::tool("openssl"));
    x509.args(["x509", "-noout", "-ext", "subjectAltName", "-serial"]);
    let parsed = run_bounded(x509, &out.stdout, CLIENT_LIMIT);
    parse_san_and_serial(&String::from_utf8_lossy(&parsed.stdout))
}

/// Parses `openssl x509 -noout -ext subjectAltName -serial` output.
pub fn parse_san_and_serial(text: &str) -> (String, String) {
    let mut san = String::new();
    let mut serial = String::new();
    let mut in_san = false;
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("serial=") {
            serial = s.trim().to_string();
            in_san = false;
        } else if line.contains("X509v3 Subject Alternative Name") {
            in_san = true;
        } else if in_san && line.starts_with(char::is_whitespace) {
            if !san.is_empty() {
                san.push_str(", ");
            }
            san.push_str(line.trim());
        } else {
            in_san = false;
        }
    }
    (san, serial)
}

/// A free port on 127.0.0.1 (bound then released; callers retry if someone else took it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `openssl s_server -accept 127.0.0.1:PORT <args>`; killed on drop.
pub struct SServer {
    child: Child,
    /// Where it accepts.
    pub addr: SocketAddr,
    /// Its stdout lines (`ACCEPT`, `ALPN protocols advertised by the client: …`,
    /// `-tlsextdebug` dumps).
    pub stdout: Lines,
    /// Its stderr lines (verify results, errors).
    pub stderr: Lines,
}

impl SServer {
    /// Starts it on a free port and waits (up to 10 s) for `ACCEPT`; retries on another port
    /// if the one picked was taken meanwhile.
    pub fn start(args: &[&str]) -> SServer {
        for _ in 0..10 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut child = Command::new(crate::tool("stdbuf"))
                .args(["-oL", "-eL"])
                .arg(crate::tool("openssl"))
                .args(["s_server", "-accept", addr.to_string().as_str()])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn openssl s_server");
            let stdout = Lines::follow(child.stdout.take().unwrap());
            let stderr = Lines::follow(child.stderr.take().unwrap());
            if stdout.wait_for("ACCEPT", Duration::from_secs(10)) {
                return SServer { child, addr, stdout, stderr };
            }
            let _ = child.kill();
            let _ = child.wait();
            stderr.wait_until(Duration::from_secs(5), |_| false); // until its reader saw EOF
            let err = stderr.text();
            assert!(
                err.contains("bind") || err.contains("in use"),
                "openssl s_server {args:?} did not start:\n{err}\n{}",
                stdout.text()
            );
        }
        panic!("openssl s_server: no free port after 10 tries");
    }

    /// The ALPN lists clients offered (`ALPN protocols advertised by the client: a, b`), in
    /// order of arrival; needs `-alpn` on the server.
    pub fn alpn_offers(&self) -> Vec<String> {
        self.stdout
            .snapshot()
            .iter()
            .filter_map(|l| l.strip_prefix("ALPN protocols advertised by the client: ").map(str::to_string))
            .collect()
    }

    /// The SNI host names clients sent, decoded from `-tlsextdebug` dumps.
    pub fn snis(&self) -> Vec<String> {
        sni_from_tlsextdebug(&self.stdout.snapshot())
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes the `server name` extension dumps `s_server -tlsextdebug` prints:
/// `TLS client extension "server name" (id=0), len=N` then `0000 - 00 33 00 00 30 6f …  ascii`.
pub fn sni_from_tlsextdebug(lines: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].starts_with("TLS client extension \"server name\"") {
            let mut bytes = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].get(4..7) == Some(" - ") {
                let hex = lines[i].get(7..54).or_else(|| lines[i].get(7..)).unwrap_or("");
                bytes.extend(hex.replace('-', " ").split_whitespace().filter_map(|b| u8::from_str_radix(b, 16).ok()));
                i += 1;
            }
            // server_name_list length (2), name type (1), host name length (2), host name.
            if bytes.len() > 5 {
                let n = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
                names.push(String::from_utf8_lossy(&bytes[5..(5 + n).min(bytes.len())]).to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// An interactive `openssl s_client` kept open (a long-lived TLS session); killed on drop.
pub struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Session information and the application data received.
    pub stdout: Lines,
    /// Verify lines and errors.
    pub stderr: Lines,
}

impl SClient {
    /// `s_client -connect addr -ign_eof -nocommands <args>` (line-buffered).
    pub fn connect(addr: SocketAddr, args: &[&str]) -> SClient {
        let mut child = Command::new(crate::tool("stdbuf"))
            .args(["-oL", "-eL"])
            .arg(crate::tool("openssl"))
            .args(["s_client", "-connect", addr.to_string().as_str(), "-ign_eof", "-nocommands"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_client");
        let stdin = child.stdin.take();
        let stdout = Lines::follow(child.stdout.take().unwrap());
        let stderr = Lines::follow(child.stderr.take().unwrap());
        SClient { child, stdin, stdout, stderr }
    }

    /// Waits for the handshake's session block (`New, TLSv1.x`); false on failure or timeout.
    pub fn wait_handshake(&self, limit: Duration) -> bool {
        self.stdout.wait_until(limit, |ls| {
            ls.iter().any(|l| l.starts_with("New, TLSv1")) || ls.iter().any(|l| l.starts_with("New, (NONE)"))
        }) && self.stdout.contains("New, TLSv1")
    }

    /// Writes `data` to the session.
    pub fn send(&mut self, data: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(data).unwrap();
        s.flush().unwrap();
    }

    /// Whether the process has exited (the session ended).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
