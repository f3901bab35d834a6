//! ringcast: a native RTMP media server.
//!
//! Data flow: socket → `server` (RTMP session) → `hub` (streams, fan-out) → players.
//! `rtmp` is the protocol without IO; `media` is what the hub carries.

pub mod app;
pub mod client;
pub mod cluster;
pub mod config;
pub mod hub;
pub mod load;
pub mod media;
pub mod rtmp;
pub mod server;
