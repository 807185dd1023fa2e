//! One direction of a TCP splice in user space: read, write, count; shut the write side down
//! on EOF (half-close) so the peer sees FIN while the other direction keeps flowing.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Copies until EOF or error; returns bytes moved. Buffers start at 4 KiB and grow to 64 KiB
/// while reads keep filling them, so idle connections stay small and bulk ones get big reads.
pub async fn one_way<R, W>(mut from: R, mut to: W, counter: &AtomicU64, activity: &AtomicU64) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 4096];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_close(&e) => break,
            Err(e) => return Err(e),
        };
        to.write_all(buf.get(..n).unwrap_or_default()).await?;
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        activity.fetch_add(1, Ordering::Relaxed);
        if n == buf.len() && buf.len() < 64 * 1024 {
            buf.resize(buf.len() * 2, 0);
        }
    }
    let _ = to.shutdown().await;
    Ok(total)
}

fn is_close(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionAborted
    )
}
