//! The destination a connection was addressed to before NAT (`SO_ORIGINAL_DST`), which is
//! what ORIGINAL_DST clusters forward to. Without a capture rule there is none: the local
//! address is the proxy itself, and forwarding there would loop.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The pre-NAT destination, if the connection was redirected to this proxy.
#[cfg(target_os = "linux")]
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = socket2::SockRef::from(stream);
    let got = if local.is_ipv4() { sock.original_dst_v4() } else { sock.original_dst_v6() };
    let addr = got.ok()?.as_socket()?;
    (addr != local).then_some(addr)
}

/// Not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn original_dst(_stream: &TcpStream) -> Option<SocketAddr> {
    None
}
