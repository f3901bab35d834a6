//! The deployment files describe clusters that work: `conf/compose.yaml`, the Kubernetes
//! manifests of `conf/k8s/` (base and example overlay) and the two Dockerfiles.
//!
//! Every container's environment, as Compose or the kubelet would give it (interpolation,
//! `env_file`, the downward API with a plausible pod IP, Secrets, `$(VAR)` references), passes
//! `ringcast --check-config`; then the effective configurations are checked against each other
//! and against the files: node ids, seeds (each names a node that exists and gossips on that
//! port), advertise addresses (the node's own address, the listener's port), container and
//! published ports, probes, scrape annotations, the drain against the grace period, and the
//! image's user and ports.
//!
//! The manifests are rendered by a small renderer of the kustomize features `conf/k8s` uses
//! (resources, namespace, images, replicas, strategic-merge patches, a secretGenerator without
//! hash suffix); an overlay using anything else fails here until the renderer learns it. When
//! `kubectl` is installed, `kubectl kustomize` renders them too and both must agree.
//!
//! Listeners are a table ([`LISTENERS`]): a new one (HTTP-FLV, RTMPS) is one row, and every
//! check of container ports, published ports and `EXPOSE` covers it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

/// Each listener: its config key, the name of its container port, its protocol. Every node
/// has the first three; the others only where they are turned on (a non-empty value).
const LISTENERS: &[(&str, &str, &str)] = &[
    ("rtmp.listen", "rtmp", "TCP"),
    ("http.listen", "http", "TCP"),
    ("cluster.gossip_listen", "gossip", "UDP"),
    ("flv.listen", "flv", "TCP"),
    ("rtmp.tls_listen", "rtmps", "TCP"),
];

/// The listeners `cfg` turns on.
fn listeners_on(
    cfg: &toml::Value,
) -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> + '_ {
    LISTENERS
        .iter()
        .filter(|(k, _, _)| !get_str(cfg, k).is_empty())
}

/// What a node needs after its drain before the supervisor's SIGKILL: `app::SHUTDOWN_GRACE`
/// (5 s) for sessions to close, about 1 s to leave gossip, and room to spare.
const AFTER_DRAIN_S: i64 = 10;

/// Plausible values for what only exists at run time.
const TEST_SECRET: &str = "deploy-test-cluster-secret-0123456789abcdef";
const TEST_ADMIN_TOKEN: &str = "deploy-test-admin-token-0123456789abcdef";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- YAML --------------------------------------------------------------------------------

/// The documents of a YAML text, with merge keys (`<<: *anchor`) applied as Compose does
/// (yaml-rust2 resolves aliases but keeps `<<` as an ordinary key); empty documents dropped.
fn load_yaml(text: &str, what: &str) -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|mut d| {
            apply_merge_keys(&mut d);
            d
        })
        .collect()
}

fn apply_merge_keys(y: &mut Yaml) {
    match y {
        Yaml::Hash(h) => {
            let merge_key = Yaml::String("<<".into());
            if let Some(merged) = h.remove(&merge_key) {
                let sources = match merged {
                    Yaml::Array(items) => items,
                    one => vec![one],
                };
                for source in sources {
                    let Yaml::Hash(source) = source else {
                        panic!("<< needs a mapping");
                    };
                    for (k, v) in source {
                        h.entry(k).or_insert(v);
                    }
                }
            }
            for (_, v) in h.iter_mut() {
                apply_merge_keys(v);
            }
        }
        Yaml::Array(items) => items.iter_mut().for_each(apply_merge_keys),
        _ => {}
    }
}

fn key(s: &str) -> Yaml {
    Yaml::String(s.to_owned())
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {y:?}"))
}

/// A scalar as the text a container would see (Compose and Kubernetes both pass strings).
fn scalar(y: &Yaml, what: &str) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("{what}: expected a scalar, found {other:?}"),
    }
}

fn hash_iter<'a>(y: &'a Yaml, what: &str) -> Vec<(&'a str, &'a Yaml)> {
    match y {
        Yaml::Hash(h) => h.iter().map(|(k, v)| (str_of(k, what), v)).collect(),
        Yaml::BadValue | Yaml::Null => Vec::new(),
        other => panic!("{what}: expected a mapping, found {other:?}"),
    }
}

fn array<'a>(y: &'a Yaml, what: &str) -> &'a [Yaml] {
    match y {
        Yaml::Array(items) => items,
        Yaml::BadValue | Yaml::Null => &[],
        other => panic!("{what}: expected a list, found {other:?}"),
    }
}

/// A YAML value as canonical text: mappings with sorted keys, so two renderings compare.
fn canon(y: &Yaml) -> String {
    match y {
        Yaml::Hash(h) => {
            let mut entries: Vec<String> = h
                .iter()
                .map(|(k, v)| format!("{}: {}", canon(k), canon(v)))
                .collect();
            entries.sort();
            format!("{{{}}}", entries.join(", "))
        }
        Yaml::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(canon).collect::<Vec<_>>().join(", ")
            )
        }
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

// ---- the binary --------------------------------------------------------------------------

/// `ringcast --check-config` with exactly `env`: the effective configuration, or the error.
fn check_config(env: &[(String, String)]) -> Result<toml::Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--check-config")
        .output()
        .expect("run ringcast");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).map_err(|e| e.to_string())
}

/// A dotted key of an effective configuration.
fn get<'a>(cfg: &'a toml::Value, dotted: &str) -> &'a toml::Value {
    dotted.split('.').fold(cfg, |v, part| {
        v.get(part).unwrap_or_else(|| panic!("no {dotted}"))
    })
}

fn get_str<'a>(cfg: &'a toml::Value, dotted: &str) -> &'a str {
    get(cfg, dotted)
        .as_str()
        .unwrap_or_else(|| panic!("{dotted} is not a string"))
}

fn split_addr(addr: &str) -> (&str, u16) {
    let (host, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr:?} is not host:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{addr:?}: bad port"));
    (host.trim_start_matches('[').trim_end_matches(']'), port)
}

fn port_of(cfg: &toml::Value, dotted: &str) -> u16 {
    split_addr(get_str(cfg, dotted)).1
}

fn is_wildcard(addr: &str) -> bool {
    let (host, _) = split_addr(addr);
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// `node.drain_timeout_s` of an effective configuration.
fn drain_s(cfg: &toml::Value) -> i64 {
    get(cfg, "node.drain_timeout_s")
        .as_integer()
        .expect("drain_timeout_s")
}

fn seeds(cfg: &toml::Value) -> Vec<String> {
    get(cfg, "cluster.seeds")
        .as_array()
        .expect("seeds")
        .iter()
        .map(|s| s.as_str().expect("seed").to_owned())
        .collect()
}

/// The address other nodes use for this node's HTTP API (`app::http_advertise_addr`): the
/// RTMP advertise host with the HTTP port, since the HTTP listener is a wildcard here.
fn http_advertise(cfg: &toml::Value) -> (String, u16) {
    let (host, _) = split_addr(get_str(cfg, "rtmp.advertise"));
    (host.to_owned(), port_of(cfg, "http.listen"))
}

/// The environment with a placeholder secret is refused, naming the key: a sample never runs
/// as it is.
fn assert_placeholder_refused(env: &[(String, String)], what: &str) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "RINGCAST_CLUSTER__SECRET" => (k.clone(), "replace-me".to_owned()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let err = check_config(&env).expect_err(what);
    assert!(err.contains("cluster.secret"), "{what}: {err}");
}

// ---- the Dockerfiles ---------------------------------------------------------------------

/// `(stage text, user uid, exposed ports)` of a Dockerfile's runtime stage: the lines from the
/// `# ---- runtime stage` marker on, the binary's COPY line left out.
fn runtime_stage(path: &Path) -> (Vec<String>, String) {
    let text = read(path);
    let (_, stage) = text
        .split_once("# ---- runtime stage")
        .unwrap_or_else(|| panic!("{}: no runtime stage marker", path.display()));
    let mut binary_copy = None;
    let lines: Vec<String> = stage
        .lines()
        .skip(1)
        .filter(|l| {
            let is_copy = l.starts_with("COPY ") && l.ends_with(" /usr/local/bin/ringcast");
            if is_copy {
                binary_copy = Some(l.to_string());
            }
            !is_copy
        })
        .map(str::to_owned)
        .collect();
    (
        lines,
        binary_copy.unwrap_or_else(|| panic!("{}: no COPY of the binary", path.display())),
    )
}

/// A stage `FROM ... AS name` up to the next `FROM`.
fn stage(text: &str, name: &str) -> String {
    let start = text
        .find(&format!(" AS {name}\n"))
        .unwrap_or_else(|| panic!("no stage {name}"));
    let rest = &text[start..];
    let end = rest[1..].find("\nFROM ").map_or(rest.len(), |i| i + 1);
    rest[..end].to_owned()
}

fn dockerfile_user() -> (i64, i64) {
    let (lines, _) = runtime_stage(&repo().join("Dockerfile"));
    let user = lines
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    (
        uid.trim().parse().expect("numeric uid"),
        gid.trim().parse().expect("numeric gid"),
    )
}

#[test]
fn both_dockerfiles_build_the_same_runtime_image() {
    let multi = repo().join("Dockerfile");
    let runtime = repo().join("conf/docker/Dockerfile.runtime");
    let (multi_lines, multi_copy) = runtime_stage(&multi);
    let (runtime_lines, runtime_copy) = runtime_stage(&runtime);
    assert_eq!(
        multi_lines, runtime_lines,
        "the runtime stages of Dockerfile and conf/docker/Dockerfile.runtime differ"
    );
    assert_eq!(
        multi_copy,
        "COPY --from=builder /out/ringcast /usr/local/bin/ringcast"
    );
    assert_eq!(
        runtime_copy,
        "COPY target/release/ringcast /usr/local/bin/ringcast"
    );
    assert_eq!(
        stage(&read(&multi), "certs"),
        stage(&read(&runtime), "certs"),
        "the certs stages differ"
    );
    let multi_text = read(&multi);
    assert!(
        multi_text.contains("FROM ${RUST_IMAGE} AS builder"),
        "multi-stage"
    );
    for path in ["Cargo.toml Cargo.lock", "src", "conf", "benches"] {
        assert!(
            multi_text.contains(&format!("COPY {path} ")),
            "the builder copies {path}"
        );
    }

    let joined = multi_lines.join("\n");
    // A non-root numeric user, so Kubernetes' runAsNonRoot can verify it.
    let (uid, gid) = dockerfile_user();
    assert!(uid > 0 && gid > 0);
    assert!(joined.contains(&format!("useradd --system --uid {uid} --gid {gid}")));
    assert!(joined.contains("STOPSIGNAL SIGTERM\n"));
    assert!(joined.contains(r#"CMD ["ringcast", "healthcheck"]"#));
    assert!(joined.contains(r#"ENTRYPOINT ["ringcast"]"#));
    assert!(
        !joined.contains("\nCMD "),
        "no CMD: the image runs the default"
    );

    // EXPOSE names every listener of the embedded default, with its protocol.
    let default = check_config(&[]).expect("the embedded default");
    let expose = multi_lines
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    let exposed: BTreeSet<&str> = expose.split_whitespace().collect();
    let wanted: BTreeSet<String> = listeners_on(&default)
        .map(|(k, _, proto)| format!("{}/{}", port_of(&default, k), proto.to_lowercase()))
        .collect();
    assert_eq!(
        exposed,
        wanted.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );

    // The context: sources in, target/ out but for the binary the runtime variant copies,
    // and never an operator's secrets.
    let ignore = read(&repo().join(".dockerignore"));
    let patterns: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    for p in [
        ".git",
        "target",
        "!target/release/ringcast",
        "conf/cluster.env",
        "conf/k8s/overlays/*/secret.env",
    ] {
        assert!(patterns.contains(&p), ".dockerignore lacks {p}");
    }
    let gitignore = read(&repo().join(".gitignore"));
    for p in ["/conf/cluster.env", "/conf/k8s/overlays/*/secret.env"] {
        assert!(gitignore.lines().any(|l| l == p), ".gitignore lacks {p}");
    }
}

// ---- Compose -----------------------------------------------------------------------------

/// Compose's interpolation of `${NAME}`, `${NAME:-default}` and `$$` (what conf/compose.yaml
/// uses; other forms fail the test).
fn interpolate(value: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .unwrap_or_else(|| panic!("unsupported interpolation in {value:?}"));
        let (expr, after) = inner;
        let (name, default) = match expr.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expr, None),
        };
        match (vars.get(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => panic!("{value:?}: ${{{name}}} is not set and has no default"),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Seconds of a Compose duration such as `610s`, `10m` or `1h2m3s`.
fn compose_seconds(text: &str) -> i64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().unwrap_or_else(|_| panic!("{text:?}"));
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("{text:?}: unit {c}"),
        };
    }
    assert!(number.is_empty(), "{text:?}: a number without unit");
    total
}

struct ComposeNode {
    name: String,
    service: Yaml,
    env: Vec<(String, String)>,
    cfg: toml::Value,
}

/// Every service of conf/compose.yaml with the environment its container gets (`env_file`
/// first, `environment` over it) and the effective configuration, with `vars` as the shell's.
fn compose_nodes(compose: &Yaml, vars: &BTreeMap<&str, &str>) -> Vec<ComposeNode> {
    let mut nodes = Vec::new();
    for (name, service) in hash_iter(&compose["services"], "services") {
        assert_eq!(
            service["env_file"].as_str(),
            Some("cluster.env"),
            "{name}: the secret comes from conf/cluster.env"
        );
        // What the README tells operators to write into conf/cluster.env.
        let mut env = vec![
            (
                "RINGCAST_CLUSTER__SECRET".to_owned(),
                TEST_SECRET.to_owned(),
            ),
            (
                "RINGCAST_HTTP__ADMIN_TOKEN".to_owned(),
                TEST_ADMIN_TOKEN.to_owned(),
            ),
        ];
        for (k, v) in hash_iter(&service["environment"], name) {
            assert!(
                !k.contains("SECRET") && !k.contains("TOKEN"),
                "{name}: {k} belongs in conf/cluster.env, not in the compose file"
            );
            let value = interpolate(&scalar(v, k), vars);
            env.retain(|(name, _)| name != k);
            env.push((k.to_owned(), value));
        }
        let cfg = check_config(&env).unwrap_or_else(|e| panic!("compose {name}: {e}"));
        nodes.push(ComposeNode {
            name: name.to_owned(),
            service: service.clone(),
            env,
            cfg,
        });
    }
    nodes
}

/// `"HOST:CONTAINER"` (or `"IP:HOST:CONTAINER"`) entries of a service's `ports`.
fn published(service: &Yaml, name: &str) -> Vec<(u16, u16)> {
    array(&service["ports"], name)
        .iter()
        .map(|p| {
            let text = scalar(p, name);
            let parts: Vec<&str> = text.split(':').collect();
            let n = parts.len();
            assert!(n >= 2, "{name}: port {text:?} publishes no fixed host port");
            let parse = |s: &str| -> u16 {
                s.trim_end_matches("/tcp")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: {text:?}"))
            };
            (parse(parts[n - 2]), parse(parts[n - 1]))
        })
        .collect()
}

#[test]
fn compose_nodes_pass_check_config_and_agree() {
    let compose = load_yaml(&read(&repo().join("conf/compose.yaml")), "compose.yaml")
        .pop()
        .expect("a document");
    for public_host in [None, Some("media.example.com")] {
        let mut vars = BTreeMap::new();
        if let Some(host) = public_host {
            vars.insert("RINGCAST_PUBLIC_HOST", host);
        }
        let nodes = compose_nodes(&compose, &vars);
        let by_name: BTreeMap<&str, &ComposeNode> =
            nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let role = |n: &ComposeNode| get_str(&n.cfg, "node.role").to_owned();
        let origins: Vec<&ComposeNode> = nodes.iter().filter(|n| role(n) == "origin").collect();
        let edges: Vec<&ComposeNode> = nodes.iter().filter(|n| role(n) == "edge").collect();
        assert_eq!(
            (origins.len(), edges.len()),
            (3, 2),
            "three origins, two edges"
        );
        let plays: Vec<&str> = edges.iter().map(|n| get_str(&n.cfg, "edge.play")).collect();
        assert_eq!(
            plays.iter().filter(|p| **p == "balance").count(),
            1,
            "one balancing edge: {plays:?}"
        );

        let mut host_ports = BTreeSet::new();
        for n in &nodes {
            let what = format!("compose {} (RINGCAST_PUBLIC_HOST={public_host:?})", n.name);
            let cfg = &n.cfg;
            assert_eq!(get_str(cfg, "node.id"), n.name, "{what}: node id");
            assert_placeholder_refused(&n.env, &what);
            for (k, _, _) in listeners_on(cfg) {
                assert!(
                    is_wildcard(get_str(cfg, k)),
                    "{what}: {k} must listen on the compose network, not loopback"
                );
            }
            // Gossip: its own service name and listener port.
            assert_eq!(
                get_str(cfg, "cluster.gossip_advertise"),
                format!("{}:{}", n.name, port_of(cfg, "cluster.gossip_listen")),
                "{what}: gossip advertise"
            );
            // RTMP (and so HTTP): its service name, or the public host whose published
            // ports are the same numbers as the listeners inside the container.
            let (host, port) = split_addr(get_str(cfg, "rtmp.advertise"));
            assert_eq!(
                port,
                port_of(cfg, "rtmp.listen"),
                "{what}: rtmp advertise port"
            );
            let ports = published(&n.service, &n.name);
            if host != n.name {
                assert_eq!(Some(host), public_host, "{what}: advertises {host}");
                let (_, http_port) = http_advertise(cfg);
                // HTTP-FLV is advertised like HTTP: the RTMP host, its own port.
                let flv_port = listeners_on(cfg)
                    .find(|(k, _, _)| *k == "flv.listen")
                    .map(|(k, _, _)| port_of(cfg, k));
                for p in [port, http_port].into_iter().chain(flv_port) {
                    assert!(
                        ports.contains(&(p, p)),
                        "{what}: advertised on the public host, so {p}:{p} must be published"
                    );
                }
            }
            if role(n) == "edge" {
                assert!(
                    listeners_on(cfg).any(|(k, _, _)| *k == "flv.listen"),
                    "{what}: edges serve browsers over HTTP-FLV"
                );
                for (k, _, proto) in listeners_on(cfg) {
                    if *proto == "TCP" {
                        let p = port_of(cfg, k);
                        assert!(ports.contains(&(p, p)), "{what}: {k} published as {p}:{p}");
                    }
                }
            }
            for (host_port, _) in &ports {
                assert!(
                    host_ports.insert(*host_port),
                    "{what}: host port {host_port} published twice"
                );
            }
            // Seeds: the origins, by service name and gossip port.
            let seed_names: BTreeSet<String> = seeds(cfg)
                .iter()
                .map(|seed| {
                    let (host, port) = split_addr(seed);
                    let target = by_name
                        .get(host)
                        .unwrap_or_else(|| panic!("{what}: seed {seed} is no service"));
                    assert_eq!(role(target), "origin", "{what}: seed {seed}");
                    assert_eq!(
                        port,
                        port_of(&target.cfg, "cluster.gossip_listen"),
                        "{what}: seed {seed}"
                    );
                    host.to_owned()
                })
                .collect();
            let all_origins: BTreeSet<String> = origins.iter().map(|o| o.name.clone()).collect();
            assert_eq!(seed_names, all_origins, "{what}: seeds");

            // Health check, and a stop that waits for the drain.
            let test: Vec<String> = array(&n.service["healthcheck"]["test"], &what)
                .iter()
                .map(|t| scalar(t, &what))
                .collect();
            assert_eq!(test, ["CMD", "ringcast", "healthcheck"], "{what}");
            let grace = compose_seconds(str_of(&n.service["stop_grace_period"], &what));
            assert!(
                grace >= drain_s(cfg) + AFTER_DRAIN_S,
                "{what}: stop_grace_period {grace}s < node.drain_timeout_s {} + {AFTER_DRAIN_S}",
                drain_s(cfg)
            );
            assert_eq!(
                n.service["image"].as_str().map(|i| interpolate(i, &vars)),
                Some("ringcast".to_owned()),
                "{what}: the image `docker build -t ringcast .` makes"
            );
        }
    }
}

// ---- Kubernetes: rendering ---------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> String {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64
            .iter()
            .position(|b| *b == c)
            .unwrap_or_else(|| panic!("not base64: {text:?}")) as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(((bits >> n) & 0xff) as u8);
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// Strategic merge as kustomize applies it for what our patches touch: mappings merge, lists
/// of named items (containers, env) merge by name with the patch's items first (kustomize's
/// order), other values are replaced.
fn strategic_merge(base: &mut Yaml, patch: &Yaml) {
    match (base, patch) {
        (Yaml::Hash(b), Yaml::Hash(p)) => {
            for (k, pv) in p {
                match b.get_mut(k) {
                    Some(bv) => strategic_merge(bv, pv),
                    None => {
                        b.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (Yaml::Array(b), Yaml::Array(p)) if p.iter().all(|i| i["name"].as_str().is_some()) => {
            let mut merged = Vec::new();
            for pi in p {
                let name = &pi["name"];
                match b.iter().find(|bi| &bi["name"] == name) {
                    Some(bi) => {
                        let mut item = bi.clone();
                        strategic_merge(&mut item, pi);
                        merged.push(item);
                    }
                    None => merged.push(pi.clone()),
                }
            }
            merged.extend(
                b.iter()
                    .filter(|bi| !p.iter().any(|pi| pi["name"] == bi["name"]))
                    .cloned(),
            );
            *b = merged;
        }
        (b, p) => *b = p.clone(),
    }
}

fn set(y: &mut Yaml, path: &[&str], value: Yaml) {
    let Yaml::Hash(h) = y else {
        panic!("not a mapping at {path:?}");
    };
    if path.len() == 1 {
        h.insert(key(path[0]), value);
    } else {
        let next = h
            .entry(key(path[0]))
            .or_insert_with(|| Yaml::Hash(Default::default()));
        set(next, &path[1..], value);
    }
}

fn kind_name(y: &Yaml) -> (String, String) {
    (
        y["kind"].as_str().unwrap_or_default().to_owned(),
        y["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Renders `dir` (a folder with a kustomization.yaml) as kustomize would, for the features
/// conf/k8s uses; any other field of a kustomization fails.
fn render(dir: &Path) -> Vec<Yaml> {
    let what = dir.join("kustomization.yaml");
    let k = load_yaml(&read(&what), &what.display().to_string())
        .pop()
        .expect("kustomization");
    let known = [
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "images",
        "replicas",
        "secretGenerator",
        "generatorOptions",
        "patches",
    ];
    for (field, _) in hash_iter(&k, "kustomization") {
        assert!(
            known.contains(&field),
            "{}: {field} is not rendered by this test; teach render() or drop it",
            what.display()
        );
    }
    let mut objects = Vec::new();
    for r in array(&k["resources"], "resources") {
        let path = dir.join(str_of(r, "resource"));
        if path.is_dir() {
            objects.extend(render(&path));
        } else {
            objects.extend(load_yaml(&read(&path), &path.display().to_string()));
        }
    }
    for generator in array(&k["secretGenerator"], "secretGenerator") {
        assert_eq!(
            k["generatorOptions"]["disableNameSuffixHash"].as_bool(),
            Some(true),
            "name suffix hashes are not rendered here"
        );
        let mut data = yaml_rust2::yaml::Hash::new();
        for env in array(&generator["envs"], "envs") {
            for line in read(&dir.join(str_of(env, "envs"))).lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (name, value) = line.split_once('=').expect("KEY=VALUE");
                data.insert(key(name), Yaml::String(base64(value.as_bytes())));
            }
        }
        let mut secret = Yaml::Hash(Default::default());
        set(&mut secret, &["apiVersion"], key("v1"));
        set(&mut secret, &["kind"], key("Secret"));
        set(
            &mut secret,
            &["metadata", "name"],
            generator["name"].clone(),
        );
        set(&mut secret, &["type"], key("Opaque"));
        set(&mut secret, &["data"], Yaml::Hash(data));
        objects.push(secret);
    }
    for p in array(&k["patches"], "patches") {
        let path = dir.join(str_of(&p["path"], "patch path"));
        let patch = load_yaml(&read(&path), &path.display().to_string())
            .pop()
            .expect("patch");
        let target = kind_name(&patch);
        let object = objects
            .iter_mut()
            .find(|o| kind_name(o) == target)
            .unwrap_or_else(|| panic!("{}: no {target:?} to patch", path.display()));
        strategic_merge(object, &patch);
    }
    if let Some(ns) = k["namespace"].as_str() {
        for o in objects
            .iter_mut()
            .filter(|o| o["kind"].as_str() != Some("Namespace"))
        {
            set(o, &["metadata", "namespace"], key(ns));
        }
    }
    for image in array(&k["images"], "images") {
        let name = str_of(&image["name"], "images.name");
        // (IndexMut panics on a missing key: look first.)
        for o in objects
            .iter_mut()
            .filter(|o| !o["spec"]["template"]["spec"]["containers"].is_badvalue())
        {
            let Yaml::Array(containers) = &mut o["spec"]["template"]["spec"]["containers"] else {
                continue;
            };
            for c in containers.iter_mut() {
                let current = c["image"].as_str().unwrap_or_default().to_owned();
                let (current_name, current_tag) = match current.rsplit_once(':') {
                    Some((n, t)) if !t.contains('/') => (n.to_owned(), Some(t.to_owned())),
                    _ => (current.clone(), None),
                };
                if current_name != name {
                    continue;
                }
                let new_name = image["newName"].as_str().unwrap_or(name);
                let tag = image["newTag"].as_str().map(str::to_owned).or(current_tag);
                let new = match tag {
                    Some(t) => format!("{new_name}:{t}"),
                    None => new_name.to_owned(),
                };
                set(c, &["image"], Yaml::String(new));
            }
        }
    }
    for r in array(&k["replicas"], "replicas") {
        let name = str_of(&r["name"], "replicas.name");
        let count = r["count"].as_i64().expect("replicas.count");
        let object = objects
            .iter_mut()
            .find(|o| {
                o["metadata"]["name"].as_str() == Some(name) && !o["spec"]["replicas"].is_badvalue()
            })
            .unwrap_or_else(|| panic!("replicas: no workload {name}"));
        set(object, &["spec", "replicas"], Yaml::Integer(count));
    }
    objects
}

/// `kubectl kustomize DIR`, when kubectl is installed.
fn kubectl_render(dir: &Path) -> Option<Vec<Yaml>> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(load_yaml(
        &String::from_utf8_lossy(&out.stdout),
        "kubectl kustomize",
    ))
}

/// conf/k8s copied into a fresh folder, with the secret file an operator writes.
fn k8s_tree() -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else if entry.file_name() != "secret.env" {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("ringcast-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy(&repo().join("conf/k8s"), &dir);
    for overlay in std::fs::read_dir(dir.join("overlays")).expect("overlays") {
        let overlay = overlay.expect("overlay").path();
        std::fs::write(
            overlay.join("secret.env"),
            format!("cluster-secret={TEST_SECRET}\nadmin-token={TEST_ADMIN_TOKEN}\n"),
        )
        .expect("secret.env");
    }
    dir
}

// ---- Kubernetes: the checks --------------------------------------------------------------

/// A pod of a rendered workload, as the kubelet would start it.
struct Pod {
    name: String,
    ip: String,
    workload: String,
    kind: String,
    spec: Yaml,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    cfg: toml::Value,
}

fn string_map(y: &Yaml, what: &str) -> BTreeMap<String, String> {
    hash_iter(y, what)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), scalar(v, what)))
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Kubernetes' `$(VAR)` expansion: a variable defined earlier in the list is substituted,
/// `$$` is a literal `$`; anything left unexpanded fails (the kubelet would pass it on as is).
fn expand(value: &str, defined: &[(String, String)], what: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some((name, after)) = rest.strip_prefix("$(").and_then(|r| r.split_once(')'))
        {
            let v = defined
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("{what}: $({name}) is not defined before it"));
            out.push_str(&v.1);
            rest = after;
        } else {
            panic!("{what}: a lone $ in {value:?}");
        }
    }
    out.push_str(rest);
    out
}

/// The environment of `container` in `pod`, Secrets looked up in `secrets` (name -> data).
fn pod_env(
    container: &Yaml,
    pod: &Pod,
    namespace: &str,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    let what = format!("pod {}", pod.name);
    assert!(
        container["envFrom"].is_badvalue(),
        "{what}: envFrom is not resolved here"
    );
    let mut env: Vec<(String, String)> = Vec::new();
    for item in array(&container["env"], &what) {
        let name = str_of(&item["name"], &what).to_owned();
        let value = if !item["value"].is_badvalue() {
            expand(&scalar(&item["value"], &name), &env, &what)
        } else if let Some(field) = item["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod.name.clone(),
                "metadata.namespace" => namespace.to_owned(),
                "status.podIP" => pod.ip.clone(),
                other => panic!("{what}: fieldRef {other} has no test value"),
            }
        } else if !item["valueFrom"]["secretKeyRef"].is_badvalue() {
            let r = &item["valueFrom"]["secretKeyRef"];
            let secret = str_of(&r["name"], &what);
            let k = str_of(&r["key"], &what);
            secrets
                .get(secret)
                .unwrap_or_else(|| panic!("{what}: no Secret {secret}"))
                .get(k)
                .unwrap_or_else(|| panic!("{what}: Secret {secret} has no key {k}"))
                .clone()
        } else {
            panic!("{what}: {name} has a value source this test does not resolve");
        };
        env.push((name, value));
    }
    env
}

/// Every pod the rendered objects would run, with its environment and configuration.
fn pods(
    objects: &[Yaml],
    external_secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<Pod> {
    let mut secrets = external_secrets.clone();
    for o in objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Secret"))
    {
        let data: BTreeMap<String, String> = hash_iter(&o["data"], "Secret data")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), unbase64(str_of(v, k))))
            .chain(string_map(&o["stringData"], "stringData"))
            .collect();
        secrets.insert(str_of(&o["metadata"]["name"], "Secret").to_owned(), data);
    }
    let mut pods = Vec::new();
    let workloads = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("StatefulSet" | "Deployment")));
    for (w, o) in workloads.enumerate() {
        let (kind, workload) = kind_name(o);
        let namespace = o["metadata"]["namespace"].as_str().unwrap_or("default");
        let replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
        let template = &o["spec"]["template"];
        let containers = array(&template["spec"]["containers"], &workload);
        assert_eq!(containers.len(), 1, "{workload}: one container");
        for i in 0..replicas {
            let name = match kind.as_str() {
                // StatefulSet pods are NAME-ORDINAL; a Deployment's get two random suffixes.
                "StatefulSet" => format!("{workload}-{i}"),
                _ => format!("{workload}-6d8f9c7b5-x{i}k2q"),
            };
            let mut pod = Pod {
                name,
                ip: format!("10.244.{}.{}", w + 1, i + 10),
                workload: workload.clone(),
                kind: kind.clone(),
                spec: template["spec"].clone(),
                labels: string_map(&template["metadata"]["labels"], "labels"),
                annotations: string_map(&template["metadata"]["annotations"], "annotations"),
                env: Vec::new(),
                cfg: toml::Value::Boolean(false),
            };
            pod.env = pod_env(&containers[0], &pod, namespace, &secrets);
            pod.cfg = check_config(&pod.env).unwrap_or_else(|e| panic!("pod {}: {e}", pod.name));
            pods.push(pod);
        }
    }
    pods
}

/// A container port by name or number: its number.
fn container_port(container: &Yaml, port: &Yaml, what: &str) -> u16 {
    if let Some(n) = port.as_i64() {
        return n as u16;
    }
    let name = str_of(port, what);
    array(&container["ports"], what)
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("{what}: no container port named {name}")) as u16
}

/// The checks of one rendering (base or overlay).
fn check_k8s(objects: &[Yaml], secrets: &BTreeMap<String, BTreeMap<String, String>>, what: &str) {
    let pods = pods(objects, secrets);
    let find = |kind: &str| -> Vec<&Yaml> {
        objects
            .iter()
            .filter(|o| o["kind"].as_str() == Some(kind))
            .collect()
    };
    let services = find("Service");
    let (uid, gid) = dockerfile_user();
    let mut ids = BTreeSet::new();
    let image = str_of(&pods[0].spec["containers"][0]["image"], "image").to_owned();
    for pod in &pods {
        let w = format!("{what}: pod {}", pod.name);
        let cfg = &pod.cfg;
        let container = &pod.spec["containers"][0];
        assert_placeholder_refused(&pod.env, &w);
        assert!(
            ids.insert(get_str(cfg, "node.id").to_owned()),
            "{w}: node id twice"
        );
        assert_eq!(
            get_str(cfg, "node.id"),
            pod.name,
            "{w}: node id is the pod name"
        );
        let role = get_str(cfg, "node.role");
        let expected_role = if pod.kind == "StatefulSet" {
            "origin"
        } else {
            "edge"
        };
        assert_eq!(role, expected_role, "{w}: origins are the StatefulSet");
        assert_eq!(str_of(&container["image"], &w), image, "{w}: one image");
        for secret_var in ["RINGCAST_CLUSTER__SECRET", "RINGCAST_HTTP__ADMIN_TOKEN"] {
            let item = array(&container["env"], &w)
                .iter()
                .find(|e| e["name"].as_str() == Some(secret_var))
                .unwrap_or_else(|| panic!("{w}: {secret_var}"));
            assert!(
                !item["valueFrom"]["secretKeyRef"].is_badvalue(),
                "{w}: {secret_var} comes from the Secret"
            );
        }

        // Listeners: wildcard, each a named container port of its number and protocol.
        if role == "edge" {
            assert!(
                listeners_on(cfg).any(|(k, _, _)| *k == "flv.listen"),
                "{w}: edges serve browsers over HTTP-FLV"
            );
        }
        for (k, port_name, proto) in listeners_on(cfg) {
            assert!(
                is_wildcard(get_str(cfg, k)),
                "{w}: {k} must not be loopback"
            );
            let p = array(&container["ports"], &w)
                .iter()
                .find(|p| p["name"].as_str() == Some(port_name))
                .unwrap_or_else(|| panic!("{w}: no container port {port_name}"));
            assert_eq!(
                p["containerPort"].as_i64(),
                Some(i64::from(port_of(cfg, k))),
                "{w}: port {port_name} is {k}"
            );
            assert_eq!(
                p["protocol"].as_str().unwrap_or("TCP"),
                *proto,
                "{w}: {port_name}"
            );
        }
        // Advertised: the pod IP and the listeners' ports (the HTTP API follows RTMP's host).
        for (adv, listen) in [
            ("rtmp.advertise", "rtmp.listen"),
            ("cluster.gossip_advertise", "cluster.gossip_listen"),
        ] {
            assert_eq!(
                get_str(cfg, adv),
                format!("{}:{}", pod.ip, port_of(cfg, listen)),
                "{w}: {adv}"
            );
        }
        assert_eq!(
            http_advertise(cfg),
            (pod.ip.clone(), port_of(cfg, "http.listen")),
            "{w}: other nodes' cluster API requests"
        );

        // Seeds: origins' stable names under the headless service, on their gossip port.
        for seed in seeds(cfg) {
            let (host, port) = split_addr(&seed);
            let (pod_name, service) = host
                .split_once('.')
                .unwrap_or_else(|| panic!("{w}: seed {seed} is not POD.SERVICE"));
            let service = service
                .strip_suffix(".svc.cluster.local")
                .map_or(service, |s| s.rsplit_once('.').map_or(s, |(svc, _ns)| svc));
            let target = pods
                .iter()
                .find(|p| p.name == pod_name)
                .unwrap_or_else(|| panic!("{w}: seed {seed}: no pod {pod_name}"));
            assert_eq!(target.kind, "StatefulSet", "{w}: seed {seed}");
            let sts = objects
                .iter()
                .find(|o| kind_name(o) == ("StatefulSet".into(), target.workload.clone()))
                .expect("StatefulSet");
            assert_eq!(
                sts["spec"]["serviceName"].as_str(),
                Some(service),
                "{w}: seed {seed}: pod DNS names live under the StatefulSet's serviceName"
            );
            let svc = services
                .iter()
                .find(|s| s["metadata"]["name"].as_str() == Some(service))
                .unwrap_or_else(|| panic!("{w}: seed {seed}: no Service {service}"));
            assert_eq!(
                svc["spec"]["clusterIP"].as_str(),
                Some("None"),
                "{w}: headless"
            );
            assert_eq!(
                svc["spec"]["publishNotReadyAddresses"].as_bool(),
                Some(true),
                "{w}: starting pods must resolve"
            );
            assert!(
                selects(
                    &string_map(&svc["spec"]["selector"], "selector"),
                    &target.labels
                ),
                "{w}: {service} selects {pod_name}"
            );
            assert_eq!(
                port,
                port_of(&target.cfg, "cluster.gossip_listen"),
                "{w}: {seed}"
            );
        }
        assert!(!seeds(cfg).is_empty(), "{w}: seeds");

        // Probes and scraping on the HTTP listener.
        let http_port = port_of(cfg, "http.listen");
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{w}: {probe}");
            assert_eq!(
                container_port(container, &get["port"], &w),
                http_port,
                "{w}: {probe}"
            );
        }
        for (annotation, value) in [
            ("prometheus.io/scrape", "true".to_owned()),
            ("prometheus.io/port", http_port.to_string()),
            ("prometheus.io/path", "/metrics".to_owned()),
        ] {
            assert_eq!(
                pod.annotations.get(annotation),
                Some(&value),
                "{w}: {annotation}"
            );
        }

        // The kubelet's SIGKILL comes after preStop + the drain, never during it.
        let pre_stop: i64 = match array(&container["lifecycle"]["preStop"]["exec"]["command"], &w) {
            [] => 0,
            [cmd, secs] if cmd.as_str() == Some("sleep") => {
                scalar(secs, &w).parse().expect("sleep seconds")
            }
            other => panic!("{w}: preStop {other:?} has no known length"),
        };
        let grace = pod.spec["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        assert!(
            grace >= pre_stop + drain_s(cfg) + AFTER_DRAIN_S,
            "{w}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {} + {AFTER_DRAIN_S}",
            drain_s(cfg)
        );

        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"]["requests"][resource].is_badvalue(),
                "{w}: requests.{resource}"
            );
        }
        let security = &pod.spec["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{w}");
        assert_eq!(
            (
                security["runAsUser"].as_i64(),
                security["runAsGroup"].as_i64()
            ),
            (Some(uid), Some(gid)),
            "{w}: the Dockerfile's USER"
        );
    }
    let origins = pods.iter().filter(|p| p.kind == "StatefulSet").count();
    let edges = pods.len() - origins;
    assert!(
        origins >= 3 && edges >= 2,
        "{what}: {origins} origins, {edges} edges"
    );

    // The LoadBalancer sends RTMP (and HTTP-FLV) to the edges' listeners of the same name.
    let lb: Vec<&&Yaml> = services
        .iter()
        .filter(|s| s["spec"]["type"].as_str() == Some("LoadBalancer"))
        .collect();
    assert_eq!(lb.len(), 1, "{what}: one LoadBalancer");
    let selector = string_map(&lb[0]["spec"]["selector"], "selector");
    for pod in &pods {
        let is_edge = pod.kind == "Deployment";
        assert_eq!(
            selects(&selector, &pod.labels),
            is_edge,
            "{what}: LoadBalancer -> edges only"
        );
        if is_edge {
            let names: Vec<String> = array(&lb[0]["spec"]["ports"], "ports")
                .iter()
                .map(|p| scalar(&p["name"], "LoadBalancer port name"))
                .collect();
            assert!(
                names.contains(&"rtmp".to_string()),
                "{what}: LoadBalancer rtmp"
            );
            for port in array(&lb[0]["spec"]["ports"], "ports") {
                let name = scalar(&port["name"], "LoadBalancer port name");
                let key = match name.as_str() {
                    "rtmp" => "rtmp.listen",
                    "flv" => "flv.listen",
                    other => panic!("{what}: LoadBalancer port {other}: players use rtmp and flv"),
                };
                let target = container_port(&pod.spec["containers"][0], &port["targetPort"], what);
                assert_eq!(
                    target,
                    port_of(&pod.cfg, key),
                    "{what}: LoadBalancer port {name}"
                );
            }
        }
    }
    // Every Service port reaches a container port of the pods it selects.
    for svc in &services {
        let selector = string_map(&svc["spec"]["selector"], "selector");
        let selected: Vec<&Pod> = pods
            .iter()
            .filter(|p| selects(&selector, &p.labels))
            .collect();
        let name = str_of(&svc["metadata"]["name"], "Service");
        assert!(
            !selected.is_empty(),
            "{what}: Service {name} selects no pod"
        );
        for port in array(&svc["spec"]["ports"], name) {
            for pod in &selected {
                container_port(&pod.spec["containers"][0], &port["targetPort"], name);
            }
        }
    }
    // One PodDisruptionBudget per workload.
    let pdbs = find("PodDisruptionBudget");
    for workload in pods.iter().map(|p| &p.workload).collect::<BTreeSet<_>>() {
        let labels = &pods
            .iter()
            .find(|p| &p.workload == workload)
            .expect("pod")
            .labels;
        let covering = pdbs
            .iter()
            .filter(|p| {
                selects(
                    &string_map(&p["spec"]["selector"]["matchLabels"], "pdb"),
                    labels,
                )
            })
            .count();
        assert_eq!(covering, 1, "{what}: PodDisruptionBudgets of {workload}");
    }
}

#[test]
fn kubernetes_manifests_render_and_every_pod_passes_check_config() {
    let tree = k8s_tree();
    // The base defines no Secret: the operator creates it (kubectl create secret, README).
    let created: BTreeMap<String, BTreeMap<String, String>> = [(
        "ringcast".to_owned(),
        [
            ("cluster-secret".to_owned(), TEST_SECRET.to_owned()),
            ("admin-token".to_owned(), TEST_ADMIN_TOKEN.to_owned()),
        ]
        .into_iter()
        .collect(),
    )]
    .into_iter()
    .collect();
    let mut dirs = vec![(tree.join("base"), created)];
    for overlay in std::fs::read_dir(tree.join("overlays")).expect("overlays") {
        dirs.push((overlay.expect("overlay").path(), BTreeMap::new()));
    }
    let mut kubectl_used = false;
    let mut example = None;
    for (dir, secrets) in &dirs {
        let what = dir.strip_prefix(&tree).unwrap_or(dir).display().to_string();
        let ours = render(dir);
        if dir.ends_with("overlays/example") {
            example = Some(ours.clone());
        }
        if let Some(theirs) = kubectl_render(dir) {
            kubectl_used = true;
            let canon_set = |objects: &[Yaml]| -> BTreeMap<(String, String), String> {
                objects.iter().map(|o| (kind_name(o), canon(o))).collect()
            };
            let (ours, theirs) = (canon_set(&ours), canon_set(&theirs));
            assert_eq!(
                ours.keys().collect::<Vec<_>>(),
                theirs.keys().collect::<Vec<_>>(),
                "{what}: objects"
            );
            for (k, v) in &ours {
                assert_eq!(
                    v, &theirs[k],
                    "{what}: {k:?} renders differently from kubectl"
                );
            }
        }
        check_k8s(&ours, secrets, &what);
    }
    let _ = std::fs::remove_dir_all(&tree);
    eprintln!(
        "rendered {} kustomizations{}",
        dirs.len(),
        if kubectl_used {
            ", the same as kubectl kustomize"
        } else {
            " (kubectl not installed: own renderer only)"
        }
    );

    // The example overlay: its namespace and image, more edges, a shorter drain that still
    // fits the grace period (checked above), and no name prefix that would break the seeds.
    let overlay = example.expect("overlays/example");
    let edge = overlay
        .iter()
        .find(|o| kind_name(o) == ("Deployment".into(), "edge".into()))
        .expect("edge Deployment");
    assert_eq!(edge["metadata"]["namespace"].as_str(), Some("ringcast"));
    assert_eq!(edge["spec"]["replicas"].as_i64(), Some(4));
    assert_eq!(
        edge["spec"]["template"]["spec"]["containers"][0]["image"].as_str(),
        Some("registry.example.com/ringcast:0.1.0")
    );
}
