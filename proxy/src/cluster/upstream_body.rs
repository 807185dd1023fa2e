//! The body of an upstream response, from either pool: one type for the router, so a response
//! is boxed once (as the downstream body) whichever protocol carried it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1pool::PooledBody;

pin_project_lite::pin_project! {
    /// An HTTP/1.1 body (its connection goes back to the pool at the end) or an HTTP/2 one.
    #[project = Proj]
    pub enum UpstreamBody {
        /// From the HTTP/1.1 pool.
        H1 { #[pin] body: PooledBody },
        /// From an HTTP/2 connection.
        H2 { #[pin] body: Incoming },
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            Proj::H1 { body } => body.poll_frame(cx),
            Proj::H2 { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1 { body } => body.is_end_stream(),
            UpstreamBody::H2 { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1 { body } => body.size_hint(),
            UpstreamBody::H2 { body } => body.size_hint(),
        }
    }
}
