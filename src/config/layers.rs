//! The default and file layers, which layer set each key, and the merge.
//!
//! Owns: the embedded default ([`DEFAULT_TOML`]), reading the `--config` file with its checks
//! of keys and TOML types, [`Layers`] (which layer set a key, so every error names it) and
//! [`merge`], which stacks default, file and environment with the `config` crate. Must never:
//! check a value's range or meaning (that is `checks.rs`), or let a section or key outside
//! [`KEYS`](super::schema::KEYS) through from the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::env::{add_env_layer, EnvVar};
use super::error::{ConfigError, Layer};
use super::schema::{is_section, is_table, kind_of, Kind};

/// The embedded default configuration (every key, with its default value).
pub const DEFAULT_TOML: &str = include_str!("../../conf/default.toml");

/// The `--config` file: its text (for the merge) and its table (to tell which keys it sets).
pub(super) struct FileLayer {
    path: PathBuf,
    text: String,
    table: toml::Table,
}

/// Which layer set which key, for error messages.
pub(super) struct Layers<'a> {
    pub(super) file: Option<&'a FileLayer>,
    /// Dotted key -> the variable that set it (the last one given, if several map to one key).
    pub(super) env: &'a BTreeMap<String, EnvVar>,
}

impl Layers<'_> {
    /// The layer that set `key` (the environment over the file over the default).
    fn layer_of(&self, key: &str) -> Layer {
        // `cluster.seeds[2]` -> `cluster.seeds`
        let key = key.split('[').next().unwrap_or(key);
        if let Some(var) = self.env.get(key) {
            return Layer::Env(var.name.clone());
        }
        if let Some(file) = self.file {
            let mut value: Option<&toml::Value> = None;
            let mut table = Some(&file.table);
            for segment in key.split('.') {
                value = table.and_then(|t| t.get(segment));
                table = value.and_then(toml::Value::as_table);
            }
            if value.is_some() {
                return Layer::File(file.path.clone());
            }
        }
        Layer::Default
    }

    /// A [`ConfigError::Invalid`] for `key`, naming the layer that set it.
    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
            layer: self.layer_of(key),
        }
    }

    /// Rewrites a `config` crate error, naming the key when it has one.
    pub(super) fn crate_error(&self, err: config::ConfigError) -> ConfigError {
        let key = match &err {
            config::ConfigError::Type { key: Some(key), .. }
            | config::ConfigError::At { key: Some(key), .. }
            | config::ConfigError::NotFound(key) => Some(key.clone()),
            _ => None,
        };
        match key {
            Some(key) => self.invalid(&key, err.to_string()),
            None => ConfigError::Other(err.to_string()),
        }
    }
}

/// Reads and parses the `--config` file, refusing unknown sections and keys and values of the
/// wrong TOML type.
pub(super) fn read_file(path: &Path) -> Result<FileLayer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
        path: path.to_owned(),
        error,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let layer = Layer::File(path.to_owned());
    for (section, value) in &table {
        if !is_section(section) {
            return Err(ConfigError::UnknownKey {
                key: section.clone(),
                layer,
            });
        }
        check_table(section, value, &layer)?;
    }
    Ok(FileLayer {
        path: path.to_owned(),
        text,
        table,
    })
}

/// Checks the table at `prefix` (a section, or a nested table such as `access.apps.live`):
/// every entry must be a key of [`KEYS`](super::schema::KEYS) with a value of its type, or a
/// table that holds keys.
fn check_table(prefix: &str, value: &toml::Value, layer: &Layer) -> Result<(), ConfigError> {
    let Some(entries) = value.as_table() else {
        return Err(ConfigError::Invalid {
            key: prefix.to_owned(),
            message: format!("expected a table ([{prefix}]), found {}", value.type_str()),
            layer: layer.clone(),
        });
    };
    for (name, value) in entries {
        if name.is_empty() || name.contains('.') {
            return Err(ConfigError::Invalid {
                key: format!("{prefix}.{name:?}"),
                message: "names here must be non-empty and without dots".to_owned(),
                layer: layer.clone(),
            });
        }
        let key = format!("{prefix}.{name}");
        if let Some(kind) = kind_of(&key) {
            if let Some(message) = toml_type_error(kind, value) {
                return Err(ConfigError::Invalid {
                    key,
                    message,
                    layer: layer.clone(),
                });
            }
        } else if is_table(&key) {
            check_table(&key, value, layer)?;
        } else {
            return Err(ConfigError::UnknownKey {
                key,
                layer: layer.clone(),
            });
        }
    }
    Ok(())
}

/// The type check for a value in the file: `None` if it has the type `kind` needs.
fn toml_type_error(kind: Kind, value: &toml::Value) -> Option<String> {
    let found = |v: &toml::Value| match v {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(x) => format!("float {x}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        other => other.type_str().to_owned(),
    };
    match kind {
        Kind::Int { .. } if value.as_integer().is_none() => {
            Some(format!("expected an integer, found {}", found(value)))
        }
        Kind::Bool if value.as_bool().is_none() => {
            Some(format!("expected true or false, found {}", found(value)))
        }
        Kind::Str { .. }
        | Kind::Choice(_)
        | Kind::Listen
        | Kind::OptionalListen
        | Kind::OptionalAdvertise
            if value.as_str().is_none() =>
        {
            Some(format!("expected a string, found {}", found(value)))
        }
        Kind::StrList => match value.as_array() {
            None => Some(format!(
                "expected a list of strings, found {}",
                found(value)
            )),
            Some(items) => items.iter().enumerate().find_map(|(i, item)| {
                item.as_str().is_none().then(|| {
                    format!(
                        "expected a list of strings, found {} at entry {}",
                        found(item),
                        i + 1
                    )
                })
            }),
        },
        Kind::HostPortList => match value.as_array() {
            None => Some(format!(
                "expected a list of \"host:port\" strings, found {}",
                found(value)
            )),
            Some(items) => items.iter().enumerate().find_map(|(i, item)| {
                item.as_str().is_none().then(|| {
                    format!(
                        "expected a list of \"host:port\" strings, found {} at entry {}",
                        found(item),
                        i + 1
                    )
                })
            }),
        },
        _ => None,
    }
}

/// Merges defaults, file and environment with the `config` crate.
pub(super) fn merge(layers: &Layers<'_>) -> Result<config::Config, ConfigError> {
    use config::{File, FileFormat};

    let mut builder =
        config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(file) = layers.file {
        builder = builder.add_source(File::from_str(&file.text, FileFormat::Toml));
    }
    let builder = add_env_layer(builder, layers)?;
    builder.build().map_err(|e| layers.crate_error(e))
}
