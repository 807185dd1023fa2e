//! Byte copying through user space, for connections `splice(2)` cannot serve: TLS on either
//! side (the bytes must be decrypted or encrypted by rustls).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Buffer per direction.
const BUF: usize = 16 * 1024;

/// Copies `from` → `to` until EOF or an error, counting bytes; then half-closes `to`
/// (a TLS `close_notify` for TLS streams), as tcp_proxy does for plain sockets.
pub async fn one_way<R, W>(mut from: R, mut to: W, counter: &AtomicU64, activity: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { break };
        if to.write_all(chunk).await.is_err() || to.flush().await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        activity.fetch_add(1, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}
