//! Helpers for the cross-crate integration tests: start the real `isthmus` binary on a
//! bootstrap, real upstream servers on 127.0.0.1, and independent peers (curl, h2load,
//! Python grpcio). Everything binds port 0 and reports the address it got, so tests run in
//! parallel without port races.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod child;
pub mod envoy;
pub mod istio;
pub mod netns;
pub mod openssl;
pub mod pki;
pub mod proxy;
pub mod side;
pub mod upstream;
pub mod xds_server;
pub mod yaml;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The built `isthmus` binary (`cargo build --bins` runs before the suite).
pub fn isthmus_bin() -> PathBuf {
    bin("isthmus")
}

/// A workspace binary from the debug target directory.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("debug").join(name);
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` first (scripts/test.sh does)", bin.display());
    bin
}

/// The Python with grpcio installed by scripts/test-deps.sh.
pub fn python() -> PathBuf {
    let p =
        std::env::var_os("ISTHMUS_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(p.exists(), "{} is missing: run scripts/test-deps.sh", p.display());
    p
}

/// Requires an external tool (installed by scripts/test-deps.sh); fails loudly if absent.
pub fn tool(name: &str) -> PathBuf {
    let out = std::process::Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().expect("sh");
    assert!(out.status.success(), "`{name}` is not installed: run scripts/test-deps.sh");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Polls `f` until it returns Some or the deadline passes (for events with no notification,
/// such as a port closing).
pub async fn eventually<T>(limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    eventually_or(limit, f, String::new).await
}

/// [`eventually`], with `why()` (the state that explains a timeout, such as a child's log)
/// added to the failure message.
pub async fn eventually_or<T>(limit: Duration, mut f: impl FnMut() -> Option<T>, why: impl FnOnce() -> String) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= end {
            panic!("condition not met within {limit:?}\n{}", why());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A unique scratch file path for this process.
///
/// The directory is new for each test process, not just named after its pid: pids are reused
/// within one run (pid_max is 32768 here, and Envoy alone starts dozens of threads), and a
/// reused directory held the previous process's files. CI saw exactly that: a test read the
/// stale `envoy-admin` file of an earlier Envoy before its own Envoy wrote it, then polled a
/// dead admin port for 30 s.
pub fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (0u32..)
            .map(|k| std::env::temp_dir().join(format!("isthmus-tests-{}-{stamp}-{k}", std::process::id())))
            .find(|d| match std::fs::create_dir(d) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => panic!("scratch dir {}: {e}", d.display()),
            })
            .expect("a fresh scratch dir")
    });
    dir.join(format!("{}-{name}", N.fetch_add(1, Ordering::Relaxed)))
}
