//! The environment layer: `RINGCAST_<SECTION>__<KEY>` variables.
//!
//! Owns: reading the process environment, the mapping from a variable's name to its dotted key
//! ([`env_key`]), the first check of each variable (a known key; integer or boolean syntax), and
//! how the variables enter the merge ([`add_env_layer`]) so that string values stay verbatim.
//! Must never: read variables other than `RINGCAST_*` and `HOSTNAME`, or turn a value into a
//! number or a boolean for a key that wants a string (`"0123"` stays `"0123"`).

use std::collections::BTreeMap;

use config::builder::DefaultState;
use config::ConfigBuilder;

use super::error::{ConfigError, Layer};
use super::layers::Layers;
use super::schema::{is_section, kind_of, Kind};

/// Prefix of the configuration environment variables (`RINGCAST_NODE__ROLE`, ...).
pub const ENV_PREFIX: &str = "RINGCAST";

/// One `RINGCAST_*` variable, as given.
pub(super) struct EnvVar {
    pub(super) name: String,
    pub(super) value: String,
}

/// The process environment as (NAME, VALUE) pairs for
/// [`Config::load_from`](super::Config::load_from): the `RINGCAST_*` variables and `HOSTNAME`
/// (for the `node.id` fallback). A `RINGCAST_*` value that is not UTF-8 is an error; other
/// variables that are not UTF-8 are skipped.
pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut env = Vec::new();
    for (name, value) in std::env::vars_os() {
        // A name that is not UTF-8 cannot be one of ours.
        let Ok(name) = name.into_string() else {
            continue;
        };
        let ours = env_key(&name).is_some();
        if !ours && name != "HOSTNAME" {
            continue;
        }
        match value.into_string() {
            Ok(value) => env.push((name, value)),
            Err(_) if ours => {
                return Err(ConfigError::Invalid {
                    key: env_key(&name).unwrap_or_default(),
                    message: "value is not valid UTF-8".to_owned(),
                    layer: Layer::Env(name),
                })
            }
            Err(_) => {}
        }
    }
    Ok(env)
}

/// `RINGCAST_RTMP__LISTEN` -> `rtmp.listen` (what the `config` crate's `Environment` does with
/// our prefix and separators); `None` for variables without the prefix.
fn env_key(name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    let prefix = format!("{}_", ENV_PREFIX.to_lowercase());
    lower
        .strip_prefix(&prefix)
        .map(|rest| rest.replace("__", "."))
}

/// The `RINGCAST_*` variables by key, each checked: known key, and an integer where one is
/// needed (so `true` or `4096.5` is refused rather than converted).
pub(super) fn collect_env(
    env: &[(String, String)],
) -> Result<BTreeMap<String, EnvVar>, ConfigError> {
    let mut vars = BTreeMap::new();
    for (name, value) in env {
        let Some(key) = env_key(name) else {
            continue;
        };
        let layer = || Layer::Env(name.clone());
        match kind_of(&key) {
            None if is_section(&key) => {
                return Err(ConfigError::Invalid {
                    message: format!(
                        "is a section; set its keys with {ENV_PREFIX}_{}__<KEY>",
                        key.to_uppercase()
                    ),
                    key,
                    layer: layer(),
                })
            }
            None => {
                return Err(ConfigError::UnknownKey {
                    key,
                    layer: layer(),
                })
            }
            Some(Kind::Int { .. }) if value.parse::<i64>().is_err() => {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("expected an integer, found {value:?}"),
                    layer: layer(),
                })
            }
            Some(Kind::Bool) if parse_bool(value).is_none() => {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("expected true or false, found {value:?}"),
                    layer: layer(),
                })
            }
            Some(_) => {}
        }
        vars.insert(
            key,
            EnvVar {
                name: name.clone(),
                value: value.clone(),
            },
        );
    }
    Ok(vars)
}

/// Adds the environment to the merge, over the default and the file (the last layer, so it wins).
pub(super) fn add_env_layer(
    builder: ConfigBuilder<DefaultState>,
    layers: &Layers<'_>,
) -> Result<ConfigBuilder<DefaultState>, ConfigError> {
    use config::Environment;

    let env_map: config::Map<String, String> = layers
        .env
        .values()
        .map(|var| (var.name.clone(), var.value.clone()))
        .collect();
    let mut builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("cluster.seeds")
            .try_parsing(true)
            .source(Some(env_map)),
    );
    // `try_parsing` turns every number-, bool- or float-looking value into a number
    // ("0123" -> 123, "1e3" -> 1000, "TRUE" -> true), and splits "" into [""]. Integer keys
    // want exactly that; string keys and the seeds list are re-set verbatim here.
    for (key, var) in layers.env {
        builder = match kind_of(key) {
            Some(Kind::Int { .. }) | None => continue,
            Some(Kind::HostPortList | Kind::StrList) => {
                builder.set_override(key, split_list(&var.value))
            }
            Some(Kind::Bool) => builder.set_override(key, parse_bool(&var.value).unwrap_or(false)),
            Some(_) => builder.set_override(key, var.value.clone()),
        }
        .map_err(|e| layers.crate_error(e))?;
    }
    Ok(builder)
}

/// "true" / "false" in any case (what `collect_env` accepts for a boolean key).
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// "a:1, b:2" -> ["a:1", "b:2"]; "" (or only commas/spaces) -> [].
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
