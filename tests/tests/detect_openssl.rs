//! The detector against a real `openssl s_client` ClientHello (an independent TLS stack, over a
//! real socket), kept out of the proxy's unit tests because it launches a process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use proxy::detect::{detect, ClientHello, Detected, MAX_PEEK};

#[test]
fn a_live_openssl_client_hello_is_detected() {
    use std::io::Read;
    use std::net::TcpListener;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spawned = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "example.com", "-alpn", "h2,http/1.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = spawned.expect("openssl is required (scripts/test-deps.sh installs it)");

    // The connection is the event: a blocking accept on its own thread, awaited with a bound.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(stream, _)| stream));
    });
    let accepted = rx.recv_timeout(Duration::from_secs(10)).ok().map(|r| r.expect("accept"));
    let mut buf = Vec::new();
    let mut result = Detected::NeedMore;
    if let Some(mut stream) = accepted {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut chunk = [0u8; 4096];
        while result == Detected::NeedMore && buf.len() < MAX_PEEK {
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            result = detect(&buf);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        result,
        Detected::Tls(ClientHello { sni: Some("example.com".into()), alpn: vec!["h2".into(), "http/1.1".into()] })
    );
}
