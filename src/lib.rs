//! ringcast: a native RTMP media server.
//!
//! Data flow: socket → `server` (RTMP session) → `hub` (streams, fan-out) → players.
//! `rtmp` is the protocol without IO; `media` is what the hub carries. `cluster` is gossip
//! membership and the stream locator, `http` the operator API; `app` wires them together.

pub mod access;
pub mod app;
pub mod balance;
pub mod client;
pub mod cluster;
pub mod config;
pub mod flv;
pub mod http;
pub mod http_client;
pub mod hub;
pub mod load;
pub mod media;
pub mod procstat;
pub mod relay;
pub mod rtmp;
pub mod server;
pub mod tls;
