//! L4: the tcp_proxy filter — bytes both ways between downstream and one upstream host, with
//! half-close, an idle timeout, and exact byte counts for Istio's TCP metrics.

mod copy;
pub mod tcp_proxy;
