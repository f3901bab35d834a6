//! Media units as the hub carries them: one `Frame` per publisher message, chunked once and
//! shared by every player.

pub mod frame;
pub mod tag;

pub use frame::{Frame, FrameKind};
