//! Byte copying through user space, for connections `splice(2)` cannot serve: TLS on either
//! side (the bytes must be decrypted or encrypted by rustls).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// First buffer per direction: most mesh TCP exchanges are small (a request, a reply).
const START: usize = 4 * 1024;
/// Largest buffer: enough for a TLS record burst; bulk transfers grow to it.
const MAX: usize = 64 * 1024;

/// Copies `from` → `to` until EOF or an error, counting bytes; then half-closes `to`
/// (a TLS `close_notify` for TLS streams), as tcp_proxy does for plain sockets. The buffer
/// starts small and doubles each time a read fills it, so idle and chatty connections stay
/// cheap and bulk ones reach full-size reads. Returns the error that ended the copy, if any
/// (the caller classifies and counts it).
pub async fn one_way<R, W>(mut from: R, mut to: W, counter: &AtomicU64, activity: &AtomicU64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; START];
    let mut result = Ok(());
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { break };
        let written = match to.write_all(chunk).await {
            Ok(()) => to.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            result = Err(e);
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        activity.fetch_add(1, Ordering::Relaxed);
        if n == buf.len() && buf.len() < MAX {
            buf.resize(buf.len() * 2, 0);
        }
    }
    let _ = to.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_everything_and_half_closes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (mut a, b) = tokio::io::duplex(8 * 1024);
        let (c, mut d) = tokio::io::duplex(8 * 1024);
        let (count, activity) = (AtomicU64::new(0), AtomicU64::new(0));
        let send = async {
            a.write_all(&data).await.unwrap();
            a.shutdown().await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            d.read_to_end(&mut got).await.unwrap();
            got
        };
        let (_, _, got) = tokio::join!(send, one_way(b, c, &count, &activity), recv);
        assert_eq!(got, data, "every byte, in order, then EOF");
        assert_eq!(count.load(Ordering::Relaxed), data.len() as u64);
    }
}
