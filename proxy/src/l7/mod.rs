//! L7: HTTP/1.1, HTTP/2 (h2c), gRPC and WebSocket through hyper, routed by the route table.

pub mod forward;
pub mod hash;
pub mod headers;
pub mod record;
pub mod replay;
pub mod reply;
pub mod router;
pub mod routes;
pub mod server;
pub mod service;
pub mod upgrade;
pub mod xfcc;
