//! Configuration for ringcast.
//!
//! Owns: the public face of the configuration ([`Config`] and its sections, [`ConfigError`],
//! the `host:port` parsers) and the order of loading in [`Config::load_from`]. Must never: hand
//! out a [`Config`] that has not passed every check below, or read anything but what
//! [`Config::load_from`] is given (a file path, a list of variables) and, for an empty
//! `node.id`, the host name.
//!
//! Layers, later ones win:
//! 1. the embedded defaults ([`DEFAULT_TOML`], `conf/default.toml`);
//! 2. the file given with `--config FILE`, if any;
//! 3. environment variables `RINGCAST_<SECTION>__<KEY>` (e.g. `RINGCAST_NODE__ROLE=edge`,
//!    `RINGCAST_CLUSTER__SEEDS=origin-0:7946,origin-1:7946`).
//!
//! The layers are merged with the `config` crate. Before the merged result is deserialized,
//! every key of the file and of the environment is checked against the key table (`KEYS` in
//! `schema.rs`: unknown keys, wrong types), then every merged value is checked (ranges, enum
//! values, addresses), so each error names the key (`rtmp.listen`) and the layer the offending
//! value came from (file path or environment variable name).
//!
//! Typed views: the listen addresses (`rtmp.listen`, `http.listen`, `cluster.gossip_listen`) are
//! [`SocketAddr`](std::net::SocketAddr) fields; the advertise addresses and seeds stay
//! `String`s (they may be host names) validated as `host:port` (see [`parse_host_port`];
//! advertise addresses may use port 0 for "the port the listener bound", see
//! [`parse_advertise`]), with `""` meaning "not set" for the advertise addresses; timeouts are
//! `*_ms` integer fields with [`Duration`](std::time::Duration) accessors on [`RtmpConfig`].
//! Rules spanning several keys (an edge needs a cluster, advertised addresses must be routable)
//! are checked last.
//!
//! Where each concern lives:
//! - `schema.rs`: the typed structs and enums, and the key table (`KEYS`: every dotted key with
//!   the `Kind` of value it takes);
//! - `layers.rs`: the embedded default, reading the file (unknown keys, TOML types), which layer
//!   set each key (`Layers`), and the merge with the `config` crate;
//! - `env.rs`: the `RINGCAST_*` variables (name to key, first checks, their part of the merge);
//! - `checks.rs`: each merged value against its `Kind`, the rules across keys, `host:port`
//!   parsing, the `node.id` fallback;
//! - `error.rs`: [`ConfigError`] and [`Layer`];
//! - `tests.rs`: the end-to-end tests over [`Config::load_from`] (tests of one function sit in
//!   its file).
//!
//! Adding a key: a field in its section's struct in `schema.rs` (a new section, such as
//! `[access]`, is a new struct and a field of [`Config`]); its entry in `KEYS`, which is all the
//! file and environment layers need to accept it (a choice lists its spellings there too, and a
//! new `Kind` needs its TOML type check in `layers.rs`, its environment handling in `env.rs` and
//! its value check in `checks.rs`); the key with its default in `conf/default.toml` and
//! `conf/origin.toml`; a row in the README's table. Tests fail when the structs, `KEYS` and those
//! two files disagree. A rule across keys goes in `checks.rs`, next to
//! `check_cluster_addresses`.

mod checks;
mod env;
mod error;
mod layers;
mod schema;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use checks::{parse_advertise, parse_host_port, FALLBACK_NODE_ID};
pub use env::ENV_PREFIX;
pub use error::{ConfigError, Layer};
pub use layers::DEFAULT_TOML;
pub use schema::{
    AccessConfig, AppAccess, ClusterConfig, Config, EdgeConfig, EdgeMode, HttpConfig, LogConfig,
    LogFormat, NodeConfig, Role, RtmpConfig,
};

use checks::{check_access, check_cluster_addresses, check_tls, check_value, pick_node_id};
use env::{collect_env, process_env};
use layers::{merge, read_file, Layers};
use schema::KEYS;

impl Config {
    /// Load with the embedded default, an optional file, and the process environment
    /// (`RINGCAST_*` variables, and `HOSTNAME` for the `node.id` fallback).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, &process_env()?)
    }

    /// Same, but with an explicit environment (list of (NAME, VALUE)) so tests don't mutate the
    /// process env. Variables other than `RINGCAST_*` and `HOSTNAME` are ignored.
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let file = file.map(read_file).transpose()?;
        let env_vars = collect_env(env)?;
        let layers = Layers {
            file: file.as_ref(),
            env: &env_vars,
        };
        let hostname_env = env
            .iter()
            .rev()
            .find(|(name, _)| name == "HOSTNAME")
            .map(|(_, value)| value.as_str());

        let merged = merge(&layers)?;
        for (key, kind) in KEYS {
            // A pattern (`access.apps.*.publish`) names no key itself; its instances are
            // checked by the rule that reads them (see `checks::check_access`).
            if !schema::is_pattern(key) {
                check_value(&merged, key, *kind, &layers)?;
            }
        }
        let mut config: Config = merged
            .try_deserialize()
            .map_err(|e| layers.crate_error(e))?;

        if config.node.id.is_empty() {
            config.node.id = pick_node_id(
                std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
                hostname_env,
            );
        }
        if !config.cluster.seeds.is_empty() && config.cluster.secret.is_empty() {
            return Err(layers.invalid(
                "cluster.seeds",
                "set cluster.secret too; gossip is authenticated",
            ));
        }
        check_cluster_addresses(&config, &layers)?;
        check_access(&config, &layers)?;
        check_tls(&config, &layers)?;
        Ok(config)
    }

    /// True when this node joins a cluster (`cluster.secret` is set); otherwise it runs
    /// standalone and opens no gossip port.
    pub fn cluster_enabled(&self) -> bool {
        !self.cluster.secret.is_empty()
    }

    /// The effective config as TOML (for --check-config). Includes `cluster.secret`.
    pub fn to_toml(&self) -> String {
        match toml::to_string(self) {
            Ok(text) => text,
            // Not reachable for this struct (only strings, integers, string lists, tables).
            Err(e) => format!("# the configuration cannot be shown as TOML: {e}\n"),
        }
    }
}
