//! End-to-end tests of loading: each layer, check and message through [`Config::load_from`].
//!
//! Owns: the temp-file and environment helpers and the tests over whole loads (defaults, file
//! and environment overrides, every refusal and its message). Must never: touch the process
//! environment (each test hands `load_from` its own variables) or leave a temp file behind.
//! Tests of a single function sit in that function's file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringcast-config-test-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp config");
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn defaults() -> Config {
    Config::load_from(None, &[]).expect("defaults load")
}

fn with_file(contents: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = TempFile::new(contents);
    Config::load_from(Some(file.path()), &env(vars))
}

fn file_err(contents: &str) -> (String, TempFile) {
    let file = TempFile::new(contents);
    let err = Config::load_from(Some(file.path()), &[]).expect_err("should be refused");
    (err.to_string(), file)
}

fn env_err(vars: &[(&str, &str)]) -> String {
    Config::load_from(None, &env(vars))
        .expect_err("should be refused")
        .to_string()
}

fn origin_toml_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/origin.toml")
}

fn expected_node_id() -> String {
    pick_node_id(
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        None,
    )
}

/// Every leaf key of `table`, dotted; a per-app table's keys are named by their pattern
/// (`access.apps.live.publish` as `access.apps.*.publish`).
fn dotted_keys(table: &toml::Table) -> BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.clone()
            } else if prefix == "access.apps" {
                format!("{prefix}.*")
            } else {
                format!("{prefix}.{name}")
            };
            match value.as_table() {
                Some(inner) => walk(&key, inner, out),
                None => {
                    out.insert(key);
                }
            }
        }
    }
    let mut keys = BTreeSet::new();
    walk("", table, &mut keys);
    keys
}

/// The keys of `KEYS` that name one key (patterns name one per app).
fn table_keys() -> BTreeSet<String> {
    KEYS.iter()
        .map(|(k, _)| (*k).to_owned())
        .filter(|k| !k.contains('*'))
        .collect()
}

fn pattern_keys() -> BTreeSet<String> {
    KEYS.iter()
        .map(|(k, _)| (*k).to_owned())
        .filter(|k| k.contains('*'))
        .collect()
}

#[test]
fn defaults_equal_documented_values() {
    let c = defaults();
    assert_eq!(c.node.id, expected_node_id());
    assert!(!c.node.id.is_empty());
    assert_eq!(c.node.role, Role::Origin);

    assert_eq!(c.rtmp.listen, "0.0.0.0:1935".parse::<SocketAddr>().unwrap());
    assert_eq!(c.rtmp.advertise, "");
    assert_eq!(c.rtmp.chunk_size, 4096);
    assert_eq!(c.rtmp.max_chunk_size, 1_048_576);
    assert_eq!(c.rtmp.max_message_size, 8_388_608);
    assert_eq!(c.rtmp.max_connections, 10_000);
    assert_eq!(c.rtmp.max_streams_per_connection, 8);
    assert_eq!(c.rtmp.handshake_timeout_ms, 10_000);
    assert_eq!(c.rtmp.idle_timeout_ms, 30_000);
    assert_eq!(c.rtmp.gop_cache_max_bytes, 16_777_216);
    assert_eq!(c.rtmp.player_queue_messages, 256);
    assert_eq!(c.rtmp.merge_write_ms, 200);
    assert_eq!(c.rtmp.player_write_timeout_ms, 10_000);
    assert_eq!(c.rtmp.handshake_timeout(), Duration::from_secs(10));
    assert_eq!(c.rtmp.idle_timeout(), Duration::from_secs(30));
    assert_eq!(c.rtmp.player_write_timeout(), Duration::from_secs(10));

    assert_eq!(
        c.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );

    assert_eq!(
        c.cluster.gossip_listen,
        "0.0.0.0:7946".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.cluster.gossip_advertise, "");
    assert!(c.cluster.seeds.is_empty());
    assert_eq!(c.cluster.secret, "");
    assert_eq!(c.cluster.cluster_id, "ringcast");

    assert_eq!(c.edge.play, EdgeMode::Proxy);
    assert_eq!(c.edge.publish, EdgeMode::Proxy);
    assert_eq!(c.edge.tier, 1);

    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn embedded_default_and_origin_example_agree() {
    let example = Config::load_from(Some(&origin_toml_path()), &[]).expect("origin.toml");
    assert_eq!(example, defaults());

    // Both files spell out every key, with node.id left empty.
    let embedded: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    let text = std::fs::read_to_string(origin_toml_path()).unwrap();
    let example: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(dotted_keys(&embedded), table_keys());
    assert_eq!(dotted_keys(&example), table_keys());
    for table in [&embedded, &example] {
        assert_eq!(table["node"]["id"].as_str(), Some(""));
    }
}

#[test]
fn key_table_matches_structs() {
    let serialized: toml::Table = toml::from_str(&defaults().to_toml()).unwrap();
    assert_eq!(dotted_keys(&serialized), table_keys());
    // With an app in `access.apps`, its table has exactly the pattern keys.
    let with_app = with_file("[access.apps.live]\npublish = [\"token\"]\n", &[]).unwrap();
    let serialized: toml::Table = toml::from_str(&with_app.to_toml()).unwrap();
    let all: BTreeSet<String> = table_keys().union(&pattern_keys()).cloned().collect();
    assert_eq!(dotted_keys(&serialized), all);
}

#[test]
fn file_overrides_defaults() {
    let c = with_file(
        r#"
        [node]
        id = "origin-7"
        role = "edge"
        [rtmp]
        listen = "[::]:1936"
        advertise = "origin-7.example.com:1936"
        chunk_size = 128
        [cluster]
        gossip_advertise = "origin-7.example.com:7946"
        seeds = ["origin-0:7946", "10.0.0.2:7946", "[fd00::3]:7946"]
        secret = "s3cret-s3cret-s3cret"
        [edge]
        play = "redirect"
        tier = 2
        [log]
        format = "json"
        "#,
        &[],
    )
    .unwrap();
    assert_eq!(c.node.id, "origin-7");
    assert_eq!(c.node.role, Role::Edge);
    assert_eq!(c.rtmp.listen, "[::]:1936".parse::<SocketAddr>().unwrap());
    assert_eq!(c.rtmp.advertise, "origin-7.example.com:1936");
    assert_eq!(c.rtmp.chunk_size, 128);
    assert_eq!(c.cluster.gossip_advertise, "origin-7.example.com:7946");
    assert_eq!(
        c.cluster.seeds,
        ["origin-0:7946", "10.0.0.2:7946", "[fd00::3]:7946"]
    );
    assert_eq!(c.edge.play, EdgeMode::Redirect);
    assert_eq!(c.edge.publish, EdgeMode::Proxy);
    assert_eq!(c.edge.tier, 2);
    assert_eq!(c.log.format, LogFormat::Json);
    // Untouched keys keep their defaults.
    assert_eq!(c.rtmp.max_connections, 10_000);
    assert_eq!(c.http, defaults().http);
}

#[test]
fn env_overrides_file() {
    let c = with_file(
        "[node]\nrole = \"edge\"\n[rtmp]\nlisten = \"0.0.0.0:1936\"\nchunk_size = 8192\n",
        &[
            ("RINGCAST_NODE__ROLE", "origin"),
            ("RINGCAST_RTMP__LISTEN", "127.0.0.1:1937"),
            ("RINGCAST_RTMP__CHUNK_SIZE", "65536"),
            ("RINGCAST_RTMP__IDLE_TIMEOUT_MS", "1500"),
            ("RINGCAST_LOG__LEVEL", "info,ringcast=debug"),
            ("UNRELATED", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.node.role, Role::Origin);
    assert_eq!(
        c.rtmp.listen,
        "127.0.0.1:1937".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.rtmp.chunk_size, 65_536);
    assert_eq!(c.rtmp.idle_timeout(), Duration::from_millis(1500));
    assert_eq!(c.log.level, "info,ringcast=debug");
}

#[test]
fn env_without_file() {
    let c = Config::load_from(None, &env(&[("RINGCAST_RTMP__CHUNK_SIZE", "8192")])).unwrap();
    assert_eq!(c.rtmp.chunk_size, 8192);
    let mut vars = CLUSTER_ENV.to_vec();
    vars.push(("RINGCAST_NODE__ROLE", "edge"));
    let c = Config::load_from(None, &env(&vars)).unwrap();
    assert_eq!(c.node.role, Role::Edge);
}

/// What a clustered origin on the default (wildcard) listen addresses needs.
const CLUSTER_ENV: [(&str, &str); 3] = [
    ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
    ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "10.0.0.1:7946"),
    ("RINGCAST_RTMP__ADVERTISE", "10.0.0.1:1935"),
];

fn cluster_env(extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let mut vars = CLUSTER_ENV.to_vec();
    vars.extend_from_slice(extra);
    env(&vars)
}

#[test]
fn seeds_from_comma_list() {
    let c = Config::load_from(
        None,
        &cluster_env(&[("RINGCAST_CLUSTER__SEEDS", "origin-0:7946, origin-1:7946")]),
    )
    .unwrap();
    assert_eq!(c.cluster.seeds, ["origin-0:7946", "origin-1:7946"]);

    let one = Config::load_from(
        None,
        &cluster_env(&[("RINGCAST_CLUSTER__SEEDS", "origin-0:7946")]),
    )
    .unwrap();
    assert_eq!(one.cluster.seeds, ["origin-0:7946"]);
}

#[test]
fn empty_seeds_env_clears_the_list() {
    let c = with_file(
        "[cluster]\nseeds = [\"origin-0:7946\"]\nsecret = \"k-0123456789abcdef\"\ngossip_advertise = \"10.0.0.1:7946\"\n[rtmp]\nadvertise = \"10.0.0.1:1935\"\n",
        &[("RINGCAST_CLUSTER__SEEDS", "")],
    )
    .unwrap();
    assert!(c.cluster.seeds.is_empty());
}

#[test]
fn an_edge_needs_a_cluster() {
    let msg = env_err(&[("RINGCAST_NODE__ROLE", "edge")]);
    assert!(
        msg.contains("node.role: an edge needs a cluster; set cluster.secret and cluster.seeds"),
        "{msg}"
    );
    assert!(msg.contains("RINGCAST_NODE__ROLE"), "{msg}");
    // An edge need not advertise RTMP (nobody is sent to it), only gossip.
    let c = Config::load_from(
        None,
        &env(&[
            ("RINGCAST_NODE__ROLE", "edge"),
            ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
            ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "edge-0:7946"),
        ]),
    )
    .unwrap();
    assert_eq!(c.node.role, Role::Edge);
    assert!(c.cluster_enabled());
}

#[test]
fn advertised_addresses_must_be_routable() {
    // Refused even standalone: such a value is never what the operator meant.
    for (var, value, key) in [
        ("RINGCAST_RTMP__ADVERTISE", "0.0.0.0:1935", "rtmp.advertise"),
        ("RINGCAST_RTMP__ADVERTISE", "[::]:1935", "rtmp.advertise"),
        (
            "RINGCAST_CLUSTER__GOSSIP_ADVERTISE",
            "0.0.0.0:7946",
            "cluster.gossip_advertise",
        ),
    ] {
        let msg = env_err(&[(var, value)]);
        assert!(msg.contains(&format!("{key}: ")), "{msg}");
        assert!(msg.contains("is not routable"), "{msg}");
        assert!(msg.contains(var), "{msg}");
        let mut vars = CLUSTER_ENV.to_vec();
        vars.push((var, value));
        let msg = env_err(&vars);
        assert!(msg.contains(&format!("{key}: ")), "{msg}");
    }
    // Port 0: the port the listener bound.
    let c = Config::load_from(
        None,
        &env(&[
            ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
            ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "127.0.0.1:0"),
            ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "127.0.0.1:0"),
            ("RINGCAST_RTMP__LISTEN", "127.0.0.1:0"),
        ]),
    )
    .unwrap();
    assert_eq!(c.cluster.gossip_advertise, "127.0.0.1:0");
    assert_eq!(parse_advertise("node-1:0"), Some(("node-1", 0)));
    assert_eq!(parse_advertise("node-1"), None);
}

#[test]
fn a_clustered_node_on_wildcard_listeners_must_say_where_it_is() {
    let msg = env_err(&[("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef")]);
    assert!(
        msg.contains("cluster.gossip_advertise: required when cluster.gossip_listen (0.0.0.0:7946) is a wildcard address"),
        "{msg}"
    );
    let msg = env_err(&[
        ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
        ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "origin-0:7946"),
    ]);
    assert!(
        msg.contains("rtmp.advertise: required for an origin in a cluster when rtmp.listen (0.0.0.0:1935) is a wildcard address"),
        "{msg}"
    );
    let msg = env_err(&[
        ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
        ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "10.0.0.1:7946"),
        ("RINGCAST_RTMP__LISTEN", "10.0.0.1:1935"),
        ("RINGCAST_NODE__ID", "origin 1"),
    ]);
    assert!(msg.contains("node.id: in a cluster, must be"), "{msg}");
    // Specific listen IPs are their own advertise addresses.
    let c = Config::load_from(
        None,
        &env(&[
            ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
            ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "10.0.0.1:7946"),
            ("RINGCAST_RTMP__LISTEN", "10.0.0.1:1935"),
        ]),
    )
    .unwrap();
    assert!(c.cluster_enabled());
    // Standalone, wildcards need nothing.
    assert!(!defaults().cluster_enabled());
}

#[test]
fn numeric_looking_env_values_for_string_keys_stay_verbatim() {
    let c = Config::load_from(
        None,
        &env(&[
            ("RINGCAST_NODE__ID", "0123"),
            ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "10.0.0.1:7946"),
            ("RINGCAST_RTMP__ADVERTISE", "10.0.0.1:1935"),
            ("RINGCAST_CLUSTER__SECRET", "1e300000000000000"),
            ("RINGCAST_CLUSTER__CLUSTER_ID", "42"),
            ("RINGCAST_LOG__LEVEL", "TRUE"),
        ]),
    )
    .unwrap();
    assert_eq!(c.node.id, "0123");
    assert_eq!(c.cluster.secret, "1e300000000000000");
    assert_eq!(c.cluster.cluster_id, "42");
    assert_eq!(c.log.level, "TRUE");
}

#[test]
fn env_prefix_is_case_insensitive_like_the_config_crate() {
    let c = Config::load_from(None, &env(&[("ringcast_log__format", "json")])).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn empty_node_id_uses_host_name() {
    let c = with_file("[node]\nid = \"\"\n", &[]).unwrap();
    assert_eq!(c.node.id, expected_node_id());
    assert_eq!(pick_node_id(Some("box-1\n".into()), Some("env")), "box-1");
    assert_eq!(
        pick_node_id(Some("\n".into()), Some("env-host")),
        "env-host"
    );
    assert_eq!(pick_node_id(None, Some(" ")), FALLBACK_NODE_ID);
    assert_eq!(pick_node_id(None, None), FALLBACK_NODE_ID);
}

#[test]
fn bad_address() {
    let (msg, file) = file_err("[rtmp]\nlisten = \"0.0.0.0:99999\"\n");
    assert!(
        msg.contains(r#"rtmp.listen: invalid socket address "0.0.0.0:99999""#),
        "{msg}"
    );
    assert!(msg.contains(&file.path().display().to_string()), "{msg}");

    let msg = env_err(&[("RINGCAST_HTTP__LISTEN", "localhost:8080")]);
    assert!(msg.contains("http.listen: invalid socket address"), "{msg}");
    assert!(msg.contains("RINGCAST_HTTP__LISTEN"), "{msg}");

    let (msg, _f) = file_err("[rtmp]\nadvertise = \"no-port\"\n");
    assert!(msg.contains("rtmp.advertise: invalid host:port"), "{msg}");

    let msg = env_err(&[("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "a b:1")]);
    assert!(msg.contains("cluster.gossip_advertise"), "{msg}");
}

#[test]
fn booleans_from_file_and_environment() {
    assert!(!defaults().rtmp.proxy_protocol);
    let on = with_file("[rtmp]\nproxy_protocol = true\n", &[]).expect("bool in file");
    assert!(on.rtmp.proxy_protocol);
    let (msg, _f) = file_err("[rtmp]\nproxy_protocol = \"yes\"\n");
    assert!(
        msg.contains("rtmp.proxy_protocol: expected true or false, found string \"yes\""),
        "{msg}"
    );
    for (value, expected) in [("true", true), ("TRUE", true), ("False", false)] {
        let c = Config::load_from(None, &env(&[("RINGCAST_RTMP__PROXY_PROTOCOL", value)]))
            .expect("bool in env");
        assert_eq!(c.rtmp.proxy_protocol, expected, "{value}");
    }
    // The environment overrides the file.
    let off = with_file(
        "[rtmp]\nproxy_protocol = true\n",
        &[("RINGCAST_RTMP__PROXY_PROTOCOL", "false")],
    )
    .expect("env over file");
    assert!(!off.rtmp.proxy_protocol);
    let msg = env_err(&[("RINGCAST_RTMP__PROXY_PROTOCOL", "1")]);
    assert!(msg.contains("expected true or false, found \"1\""), "{msg}");
    assert!(msg.contains("RINGCAST_RTMP__PROXY_PROTOCOL"), "{msg}");
}

#[test]
fn bad_role_and_modes() {
    let (msg, _f) = file_err("[node]\nrole = \"edg\"\n");
    assert!(
        msg.contains(r#"node.role: unknown value "edg", expected origin or edge"#),
        "{msg}"
    );
    let msg = env_err(&[("RINGCAST_NODE__ROLE", "edg")]);
    assert!(
        msg.contains(r#"node.role: unknown value "edg", expected origin or edge"#),
        "{msg}"
    );
    assert!(msg.contains("RINGCAST_NODE__ROLE"), "{msg}");
    let msg = env_err(&[("RINGCAST_NODE__ROLE", "1")]);
    assert!(msg.contains("node.role: unknown value \"1\""), "{msg}");
    let msg = env_err(&[("RINGCAST_EDGE__PUBLISH", "Proxy")]);
    assert!(msg.contains("edge.publish: unknown value"), "{msg}");
    let msg = env_err(&[("RINGCAST_LOG__FORMAT", "xml")]);
    assert!(msg.contains("log.format: unknown value"), "{msg}");
    let msg = env_err(&[("RINGCAST_EDGE__TIER", "4")]);
    assert!(msg.contains("edge.tier"), "{msg}");
}

#[test]
fn out_of_range_values() {
    let (msg, _f) = file_err("[rtmp]\nchunk_size = 100\n");
    assert!(
        msg.contains("rtmp.chunk_size: 100 is out of range"),
        "{msg}"
    );
    let msg = env_err(&[("RINGCAST_RTMP__CHUNK_SIZE", "65537")]);
    assert!(msg.contains("rtmp.chunk_size"), "{msg}");
    assert!(msg.contains("RINGCAST_RTMP__CHUNK_SIZE"), "{msg}");
    let msg = env_err(&[("RINGCAST_RTMP__MAX_MESSAGE_SIZE", "16777216")]);
    assert!(msg.contains("rtmp.max_message_size"), "{msg}");
    let msg = env_err(&[("RINGCAST_RTMP__IDLE_TIMEOUT_MS", "0")]);
    assert!(msg.contains("rtmp.idle_timeout_ms"), "{msg}");
    let (msg, _f) = file_err("[rtmp]\nmax_connections = -1\n");
    assert!(msg.contains("rtmp.max_connections"), "{msg}");
    let (msg, _f) = file_err("[rtmp]\nmax_chunk_size = 99999999999\n");
    assert!(msg.contains("rtmp.max_chunk_size"), "{msg}");
}

#[test]
fn unknown_key_in_file() {
    let (msg, file) = file_err("[rtmp]\nlisen = \"0.0.0.0:1935\"\n");
    assert!(msg.contains("unknown key rtmp.lisen"), "{msg}");
    assert!(msg.contains(&file.path().display().to_string()), "{msg}");

    let (msg, _f) = file_err("[rtmpp]\nlisten = \"0.0.0.0:1935\"\n");
    assert!(msg.contains("unknown key rtmpp"), "{msg}");
    let (msg, _f) = file_err("listen = \"0.0.0.0:1935\"\n");
    assert!(msg.contains("unknown key listen"), "{msg}");
    let (msg, _f) = file_err("[rtmp.tls]\ncert = \"x\"\n");
    assert!(msg.contains("unknown key rtmp.tls"), "{msg}");
}

#[test]
fn unknown_key_in_env() {
    let msg = env_err(&[("RINGCAST_RTMP__LISEN", "0.0.0.0:1935")]);
    assert!(msg.contains("unknown key rtmp.lisen"), "{msg}");
    assert!(msg.contains("RINGCAST_RTMP__LISEN"), "{msg}");
    let msg = env_err(&[("RINGCAST_RTMP_LISTEN", "0.0.0.0:1935")]);
    assert!(msg.contains("unknown key rtmp_listen"), "{msg}");
    let msg = env_err(&[("RINGCAST_RTMP", "x")]);
    assert!(msg.contains("rtmp: is a section"), "{msg}");
}

#[test]
fn wrong_type() {
    let (msg, _f) = file_err("[rtmp]\nchunk_size = \"big\"\n");
    assert!(
        msg.contains(r#"rtmp.chunk_size: expected an integer, found string "big""#),
        "{msg}"
    );
    let (msg, _f) = file_err("[rtmp]\nchunk_size = 4096.5\n");
    assert!(
        msg.contains("rtmp.chunk_size: expected an integer"),
        "{msg}"
    );
    let (msg, _f) = file_err("[node]\nid = 7\n");
    assert!(msg.contains("node.id: expected a string"), "{msg}");
    let (msg, _f) = file_err("[cluster]\nseeds = \"origin-0:7946\"\n");
    assert!(msg.contains("cluster.seeds: expected a list"), "{msg}");
    let (msg, _f) = file_err("[cluster]\nseeds = [\"a:1\", 2]\n");
    assert!(msg.contains("cluster.seeds"), "{msg}");
    let (msg, _f) = file_err("rtmp = 5\n");
    assert!(msg.contains("rtmp: expected a table"), "{msg}");

    let msg = env_err(&[("RINGCAST_RTMP__CHUNK_SIZE", "big")]);
    assert!(
        msg.contains("rtmp.chunk_size: expected an integer"),
        "{msg}"
    );
    let msg = env_err(&[("RINGCAST_RTMP__MAX_CONNECTIONS", "true")]);
    assert!(msg.contains("rtmp.max_connections"), "{msg}");
}

#[test]
fn missing_or_bad_file() {
    let path = std::env::temp_dir().join("ringcast-config-test-does-not-exist.toml");
    let err = Config::load_from(Some(&path), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::ReadFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot read config file"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    let (msg, file) = file_err("[rtmp\nlisten = 1\n");
    assert!(msg.contains("is not valid TOML"), "{msg}");
    assert!(msg.contains(&file.path().display().to_string()), "{msg}");
}

#[test]
fn seeds_need_a_secret_and_valid_entries() {
    let msg = env_err(&[("RINGCAST_CLUSTER__SEEDS", "origin-0:7946")]);
    assert!(
        msg.contains("cluster.seeds: set cluster.secret too; gossip is authenticated"),
        "{msg}"
    );
    let msg = env_err(&[
        ("RINGCAST_CLUSTER__SEEDS", "origin-0:7946,origin-1"),
        ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
    ]);
    assert!(
        msg.contains("cluster.seeds: invalid host:port \"origin-1\""),
        "{msg}"
    );
    let (msg, _f) = file_err("[cluster]\nseeds = [\"\"]\nsecret = \"k-0123456789abcdef\"\n");
    assert!(msg.contains("cluster.seeds: invalid host:port"), "{msg}");
}

#[test]
fn empty_required_strings() {
    let msg = env_err(&[("RINGCAST_CLUSTER__CLUSTER_ID", "")]);
    assert!(
        msg.contains("cluster.cluster_id: must not be empty"),
        "{msg}"
    );
    let (msg, _f) = file_err("[log]\nlevel = \" \"\n");
    assert!(msg.contains("log.level: must not be empty"), "{msg}");
}

#[test]
fn to_toml_round_trips() {
    let mut c = defaults();
    c.node.id = "edge-3".into();
    c.node.role = Role::Edge;
    c.rtmp.listen = "[::1]:19350".parse().unwrap();
    c.rtmp.advertise = "edge-3.example.com:1935".into();
    c.rtmp.gop_cache_max_bytes = 0;
    c.cluster.gossip_advertise = "edge-3.example.com:7946".into();
    c.cluster.seeds = vec!["origin-0:7946".into(), "origin-1:7946".into()];
    c.cluster.secret = "0123456789012345".into();
    c.edge.publish = EdgeMode::Redirect;
    c.log.format = LogFormat::Json;

    let text = c.to_toml();
    let parsed: Config = toml::from_str(&text).unwrap();
    assert_eq!(parsed, c);
    let file = TempFile::new(&text);
    assert_eq!(Config::load_from(Some(file.path()), &[]).unwrap(), c);

    let d = defaults();
    assert_eq!(toml::from_str::<Config>(&d.to_toml()).unwrap(), d);
}

#[test]
fn debug_redacts_the_secret() {
    let mut c = defaults();
    c.cluster.secret = "hunter2".into();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn error_key_accessor() {
    let err = Config::load_from(None, &env(&[("RINGCAST_RTMP__LISEN", "x")])).unwrap_err();
    assert_eq!(err.key(), Some("rtmp.lisen"));
}

#[test]
fn cluster_secrets_must_be_long_and_not_the_samples_placeholder() {
    let clustered = |secret: &str| {
        env(&[
            ("RINGCAST_CLUSTER__SECRET", secret),
            ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "10.0.0.1:7946"),
            ("RINGCAST_RTMP__ADVERTISE", "10.0.0.1:1935"),
        ])
    };
    let short = Config::load_from(None, &clustered("0123456789abcde")).expect_err("15 bytes");
    assert_eq!(short.key(), Some("cluster.secret"));
    assert!(
        short.to_string().contains("is 15 bytes; use at least 16"),
        "{short}"
    );
    for placeholder in [
        "replace-me",
        "REPLACE-ME-with-a-long-random-value",
        "changeme",
    ] {
        let err = Config::load_from(None, &clustered(placeholder)).expect_err(placeholder);
        assert!(
            err.to_string().contains("placeholder"),
            "{placeholder}: {err}"
        );
    }
    assert!(Config::load_from(None, &clustered("0123456789abcdef")).is_ok());
    // The samples in conf/ do not work as they are...
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    for sample in ["cluster-origin.toml", "edge.toml"] {
        let err = Config::load_from(Some(&conf.join(sample)), &[]).expect_err(sample);
        assert_eq!(err.key(), Some("cluster.secret"), "{sample}: {err}");
        // ...and do with a real secret from the environment.
        let real = env(&[(
            "RINGCAST_CLUSTER__SECRET",
            "a-real-secret-of-32-characters!!",
        )]);
        Config::load_from(Some(&conf.join(sample)), &real)
            .unwrap_or_else(|e| panic!("{sample} with a secret: {e}"));
    }
}

#[test]
fn access_rules_per_app_from_the_file_and_the_environment() {
    let c = with_file(
        r#"
        [access.default]
        play = ["cidr"]
        [access.apps.live]
        publish = ["token|jwt", "cidr"]
        takeover = false
        [access.apps.private]
        play = ["jwt"]
        "#,
        &[("RINGCAST_ACCESS__APPS__LIVE__PLAY", "hook, jwt")],
    )
    .unwrap();
    assert_eq!(c.access.default.play, ["cidr"]);
    let live = &c.access.apps["live"];
    assert_eq!(live.publish, ["token|jwt", "cidr"]);
    assert_eq!(live.play, ["hook", "jwt"], "from the environment");
    assert!(!live.takeover);
    assert!(
        c.access.apps["private"].takeover,
        "takeover defaults to true"
    );
    // Only the environment.
    let c = Config::load_from(
        None,
        &env(&[("RINGCAST_ACCESS__APPS__CAMS__PUBLISH", "token")]),
    )
    .unwrap();
    assert_eq!(c.access.apps["cams"].publish, ["token"]);

    let (msg, _f) = file_err("[access.apps.live]\npublish = [\"tokens\"]\n");
    assert!(
        msg.contains("access.apps.live.publish: unknown checker \"tokens\""),
        "{msg}"
    );
    let (msg, _f) = file_err("[access.apps.live]\nrecord = [\"token\"]\n");
    assert!(msg.contains("access.apps.live.record"), "{msg}");
    let (msg, _f) = file_err("[access.apps.live]\npublish = \"token\"\n");
    assert!(msg.contains("expected a list of strings"), "{msg}");
    let msg = env_err(&[("RINGCAST_ACCESS__APPS__LIVE__PUBLISH", "cidr|nope")]);
    assert!(msg.contains("unknown checker \"nope\""), "{msg}");
}

#[test]
fn rtmps_keys_and_their_rules() {
    let c = defaults();
    assert_eq!(c.rtmp.tls_listen, "");
    assert_eq!(
        (c.rtmp.tls_cert.as_str(), c.rtmp.tls_key.as_str()),
        ("", "")
    );
    assert!(!c.cluster.relay_tls);
    assert_eq!(c.cluster.relay_tls_ca, "");

    let on = Config::load_from(
        None,
        &env(&[
            ("RINGCAST_RTMP__TLS_LISTEN", "127.0.0.1:0"),
            ("RINGCAST_RTMP__TLS_CERT", "/etc/ringcast/cert.pem"),
            ("RINGCAST_RTMP__TLS_KEY", "/etc/ringcast/key.pem"),
        ]),
    )
    .expect("RTMPS on");
    assert_eq!(on.rtmp.tls_listen, "127.0.0.1:0");

    let msg = env_err(&[("RINGCAST_RTMP__TLS_LISTEN", "nowhere:1936")]);
    assert!(
        msg.starts_with("rtmp.tls_listen: invalid socket address"),
        "{msg}"
    );
    let msg = env_err(&[("RINGCAST_RTMP__TLS_LISTEN", "0.0.0.0:1936")]);
    assert!(
        msg.starts_with("rtmp.tls_cert: required with rtmp.tls_listen"),
        "{msg}"
    );
    let msg = env_err(&[
        ("RINGCAST_RTMP__TLS_LISTEN", "0.0.0.0:1936"),
        ("RINGCAST_RTMP__TLS_CERT", "/c.pem"),
    ]);
    assert!(
        msg.starts_with("rtmp.tls_key: required with rtmp.tls_listen"),
        "{msg}"
    );
    let msg = env_err(&[("RINGCAST_RTMP__TLS_KEY", "/k.pem")]);
    assert!(
        msg.starts_with("rtmp.tls_cert: required with rtmp.tls_key"),
        "{msg}"
    );
    let msg = env_err(&[("RINGCAST_RTMP__TLS_ADVERTISE", "0.0.0.0:1936")]);
    assert!(
        msg.starts_with("rtmp.tls_advertise: \"0.0.0.0:1936\" is not routable"),
        "{msg}"
    );

    // Relays over TLS need certificates to trust, and an origin needs an RTMPS listener.
    let err = Config::load_from(
        None,
        &cluster_env(&[("RINGCAST_CLUSTER__RELAY_TLS", "true")]),
    )
    .expect_err("nothing to trust")
    .to_string();
    assert!(
        err.starts_with("cluster.relay_tls_ca: required with cluster.relay_tls"),
        "{err}"
    );
    let err = Config::load_from(
        None,
        &cluster_env(&[
            ("RINGCAST_CLUSTER__RELAY_TLS", "true"),
            ("RINGCAST_CLUSTER__RELAY_TLS_CA", "/ca.pem"),
        ]),
    )
    .expect_err("an origin without RTMPS")
    .to_string();
    assert!(
        err.starts_with("rtmp.tls_listen: required on an origin"),
        "{err}"
    );
    let edge = Config::load_from(
        None,
        &cluster_env(&[
            ("RINGCAST_NODE__ROLE", "edge"),
            ("RINGCAST_CLUSTER__RELAY_TLS", "true"),
            ("RINGCAST_CLUSTER__RELAY_TLS_CA", "/ca.pem"),
        ]),
    )
    .expect("an edge needs no RTMPS listener to relay over TLS");
    assert!(edge.cluster.relay_tls);
}
