//! A request body that can be sent again: frames stream to the first try as they arrive and
//! are kept (up to a cap) so a retry can replay them, then continue with the rest.
//!
//! Streaming first matters: a gRPC bidirectional call under a retry policy must not wait for
//! the client to finish sending before anything reaches the upstream.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::cluster::{BoxError, ProxyBody};

/// Bytes kept for replay; beyond this the request streams on but cannot be retried
/// (Envoy's default buffer limit, 1 MiB).
pub const REPLAY_CAP: usize = 1024 * 1024;

struct Shared {
    rest: ProxyBody,
    frames: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    kept: usize,
    overflowed: bool,
    ended: bool,
}

/// One reader of the shared body; clone a fresh one per try with [`ReplayBody::replay`].
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    pos: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

impl ReplayBody {
    /// Wraps the downstream body.
    pub fn new(body: ProxyBody) -> Self {
        let hint = body.size_hint();
        let shared =
            Shared { rest: body, frames: Vec::new(), trailers: None, kept: 0, overflowed: false, ended: false };
        ReplayBody { shared: Arc::new(Mutex::new(shared)), pos: 0, trailers_sent: false, hint }
    }

    /// A reader that starts from the first byte again, or `None` when more than
    /// [`REPLAY_CAP`] was sent and the start is gone.
    pub fn replay(&self) -> Option<ReplayBody> {
        let s = self.shared.lock().ok()?;
        if s.overflowed {
            return None;
        }
        Some(ReplayBody { shared: self.shared.clone(), pos: 0, trailers_sent: false, hint: self.hint })
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Ok(mut s) = this.shared.lock() else {
            return Poll::Ready(Some(Err("request body state poisoned".into())));
        };
        if let Some(b) = s.frames.get(this.pos) {
            let b = b.clone();
            this.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if s.ended {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        match Pin::new(&mut s.rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    if !s.overflowed {
                        s.kept += data.len();
                        if s.kept > REPLAY_CAP {
                            s.overflowed = true;
                            s.frames = Vec::new();
                        } else {
                            s.frames.push(data.clone());
                            this.pos += 1;
                        }
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    s.ended = true;
                    this.trailers_sent = true;
                    if let Some(t) = frame.trailers_ref() {
                        s.trailers = Some(t.clone());
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
            },
            Poll::Ready(None) => {
                s.ended = true;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(chunks: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from(*c)))).collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn replays_everything_the_first_try_read() {
        let first = ReplayBody::new(body(&["a", "b", "c"]));
        let second = first.replay().unwrap();
        let got = first.collect().await.unwrap().to_bytes();
        assert_eq!(got, "abc");
        assert_eq!(second.collect().await.unwrap().to_bytes(), "abc");
    }

    #[tokio::test]
    async fn a_retry_after_a_partial_read_continues_with_the_rest() {
        let mut first = ReplayBody::new(body(&["a", "b", "c"]));
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        let second = first.replay().unwrap();
        drop(first);
        assert_eq!(second.collect().await.unwrap().to_bytes(), "abc");
    }

    #[tokio::test]
    async fn over_the_cap_it_streams_but_cannot_replay() {
        let big: &'static str = Box::leak("x".repeat(REPLAY_CAP + 1).into_boxed_str());
        let first = ReplayBody::new(body(&[big, "y"]));
        let keep = first.replay().unwrap();
        assert_eq!(first.collect().await.unwrap().to_bytes().len(), REPLAY_CAP + 2);
        assert!(keep.replay().is_none());
    }
}
