//! Configuration errors, and the layer a value came from.
//!
//! Owns: [`ConfigError`] (each message names the key, or the file that could not be read, and
//! the layer the value came from) and [`Layer`]. Must never: decide what is valid (the file
//! and environment layers and `checks.rs` do), or drop the key or the layer from a message.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The embedded defaults.
    Default,
    /// The `--config` file.
    File(PathBuf),
    /// An environment variable (its name as given).
    Env(String),
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Default => f.write_str("in the embedded default config"),
            Layer::File(path) => write!(f, "in file {}", path.display()),
            Layer::Env(name) => write!(f, "from environment variable {name}"),
        }
    }
}

/// A configuration error. Every message names the offending key (or the file that could not
/// be read) and where the value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file is missing or unreadable.
    #[error("cannot read config file {}: {error}", path.display())]
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The `--config` file is not valid TOML (the message has line and column).
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// A key (`rtmp.lisen`) or section that does not exist.
    #[error("unknown key {key} ({layer})")]
    UnknownKey { key: String, layer: Layer },
    /// A value of the wrong type, out of range, or otherwise invalid.
    #[error("{key}: {message} ({layer})")]
    Invalid {
        key: String,
        message: String,
        layer: Layer,
    },
    /// An error from the `config` crate that is not tied to a key (not expected in practice).
    #[error("configuration error: {0}")]
    Other(String),
}

impl ConfigError {
    /// The dotted key the error is about, if any (`"rtmp.listen"`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}
