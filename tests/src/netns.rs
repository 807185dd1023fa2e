//! Network namespaces made by a test (root only; CI runs as root): a private loopback and a
//! dummy interface standing in for a pod network, removed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

/// A process started in a namespace; killed on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A namespace named uniquely for this process.
pub struct Netns {
    /// Its name.
    pub name: String,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

impl Netns {
    /// Creates `isx-<pid>-<tag>` with `lo` up and a veth pair `d0`/`d1` (10.200.0.2/24 on
    /// `d0`, default route) so any non-loopback destination is routable and can be redirected
    /// (this kernel has veth but no dummy interfaces).
    pub fn new(tag: &str) -> Netns {
        let ns = Self::create(tag);
        for cmd in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
            vec!["addr", "add", "10.200.0.2/24", "dev", "d0"],
            vec!["link", "set", "d0", "up"],
            vec!["link", "set", "d1", "up"],
            vec!["route", "add", "default", "dev", "d0"],
        ] {
            let mut args = vec!["-n", ns.name.as_str()];
            args.extend(cmd);
            let out = ip(&args);
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        ns
    }

    /// A pod/peer pair joined by a veth: the pod side `10.200.0.2/24` (default route via the
    /// peer), the peer side `10.200.0.1/24` — the recipe of spec capture-injection §5.
    pub fn pair(tag: &str) -> (Netns, Netns) {
        let pod = Self::create(&format!("{tag}p"));
        let peer = Self::create(&format!("{tag}q"));
        let run = |args: &[&str]| {
            let out = ip(args);
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["-n", &pod.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &peer.name]);
        for (ns, dev, addr) in [(&pod, "v0", "10.200.0.2/24"), (&peer, "v1", "10.200.0.1/24")] {
            run(&["-n", &ns.name, "link", "set", "lo", "up"]);
            run(&["-n", &ns.name, "addr", "add", addr, "dev", dev]);
            run(&["-n", &ns.name, "link", "set", dev, "up"]);
        }
        run(&["-n", &pod.name, "route", "add", "default", "via", "10.200.0.1"]);
        (pod, peer)
    }

    /// An empty namespace `isx-<pid>-<tag>` (a stale one from a crashed run is replaced).
    fn create(tag: &str) -> Netns {
        let name = format!("isx-{}-{tag}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        let out = ip(&["netns", "add", &name]);
        assert!(
            out.status.success(),
            "ip netns add failed (tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    /// `python3 -m http.server` inside on `bind:port`, serving `body` at `/who` and at `/`;
    /// as `uid` when given (then the system python, which any uid can run), else as root.
    /// Returns once it says it is serving.
    pub fn http_server(&self, uid: Option<u32>, bind: &str, port: u16, body: &str) -> Server {
        let dir = crate::scratch(body);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("who"), body).expect("write who");
        std::fs::write(dir.join("index.html"), body).expect("write index.html");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]);
        match uid {
            Some(u) => {
                cmd.args(["setpriv", &format!("--reuid={u}"), &format!("--regid={u}"), "--clear-groups"]);
                cmd.arg("/usr/bin/python3");
            }
            None => {
                cmd.arg(crate::python());
            }
        }
        let mut child = cmd
            .args(["-u", "-m", "http.server", &port.to_string(), "--bind", bind, "--directory"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start http.server");
        let mut line = String::new();
        if let Some(out) = child.stdout.as_mut() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        assert!(line.contains("Serving HTTP"), "http.server did not start: {line}");
        Server(child)
    }

    /// `ip netns exec <ns>` as a command prefix.
    pub fn prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name.clone()]
    }

    /// Runs a command inside and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("run in netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
