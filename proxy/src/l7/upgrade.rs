//! WebSocket (HTTP/1.1 `Upgrade`) pass-through: after the upstream answers 101, the two
//! upgraded connections are joined byte for byte.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::cluster::ProxyBody;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Puts back the upgrade headers that hop-by-hop stripping removed.
pub fn restore_headers(h: &mut HeaderMap) {
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Once both sides have switched protocols, copies bytes between them until either closes.
pub fn splice_later(downstream: OnUpgrade, resp: &mut Response<ProxyBody>) {
    let upstream = hyper::upgrade::on(&mut *resp);
    tokio::spawn(async move {
        let (Ok(down), Ok(up)) = (downstream.await, upstream.await) else {
            tracing::debug!("websocket upgrade did not complete");
            return;
        };
        let mut down = TokioIo::new(down);
        let mut up = TokioIo::new(up);
        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    });
}
