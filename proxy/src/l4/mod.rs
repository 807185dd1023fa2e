//! L4: the tcp_proxy filter — bytes both ways between downstream and one upstream host, with
//! half-close, an idle timeout, and exact byte counts for Istio's TCP metrics; `splice(2)` moves
//! the bytes without copying them through user space when neither side is TLS.

pub mod copy;
pub mod policy;
// The crate denies unsafe code; the three FFI calls of splice(2)/pipe2(2) live here alone.
#[allow(unsafe_code)]
pub mod splice;
pub mod tcp_proxy;

/// `fut` under an optional time limit (`None`: no limit), as `tokio::time::timeout` gives it.
pub async fn deadline<F: std::future::Future>(
    limit: Option<std::time::Duration>,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut).await,
        None => Ok(fut.await),
    }
}
