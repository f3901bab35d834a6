//! Prometheus text exposition (format 0.0.4), written by hand: a handful of gauges and
//! counters read from the hub and the cluster at scrape time.
//!
//! Owns: metric names and help texts. Must never: keep state between scrapes (every value is
//! read from its owner), or emit a series whose labels are not escaped.

use std::fmt::Write;

use super::HttpState;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
}

pub(super) fn render(state: &HttpState) -> String {
    let mut out = Out(String::with_capacity(4096));
    out.family(
        "ringcast_info",
        "gauge",
        "Constant 1, labelled with this node's identity.",
    );
    let _ = writeln!(
        out.0,
        "ringcast_info{{node_id=\"{}\",role=\"{}\",version=\"{}\"}} 1",
        label(&state.node_id),
        state.role.as_str(),
        env!("CARGO_PKG_VERSION")
    );
    out.metric(
        "ringcast_ready",
        "gauge",
        "1 when the node accepts work (what /readyz answers 200 for).",
        u64::from(state.health.is_ready()),
    );

    let streams = state.hub.streams();
    let publishers = streams.iter().filter(|s| s.publishing).count() as u64;
    let players: u64 = streams.iter().map(|s| s.players as u64).sum();
    let flv_players: u64 = streams.iter().map(|s| s.flv_players as u64).sum();
    out.metric(
        "ringcast_streams",
        "gauge",
        "Streams in this node's hub (published, or with players waiting).",
        streams.len() as u64,
    );
    out.metric(
        "ringcast_publishers",
        "gauge",
        "Streams with a publisher on this node.",
        publishers,
    );
    out.metric(
        "ringcast_players",
        "gauge",
        "Players attached to this node's streams.",
        players,
    );
    out.family(
        "ringcast_players_by_protocol",
        "gauge",
        "Players attached to this node's streams, by protocol (rtmp includes other nodes' relays).",
    );
    let _ = writeln!(
        out.0,
        "ringcast_players_by_protocol{{protocol=\"rtmp\"}} {}",
        players - flv_players.min(players)
    );
    let _ = writeln!(
        out.0,
        "ringcast_players_by_protocol{{protocol=\"http-flv\"}} {flv_players}"
    );
    out.metric(
        "ringcast_streams_waiting",
        "gauge",
        "Streams with players and no publisher (capped by rtmp.max_waiting_streams).",
        state.hub.waiting_streams() as u64,
    );
    out.metric(
        "ringcast_relays_waiting_for_origin",
        "gauge",
        "Streams whose players wait for an origin to advertise them (no upstream is opened before).",
        state.relays.get().map_or(0, |r| r.waiting_count() as u64),
    );
    out.metric(
        "ringcast_rtmp_bytes_in_total",
        "counter",
        "Bytes read from RTMP connections after the handshake.",
        state.traffic.bytes_in(),
    );
    out.metric(
        "ringcast_rtmp_bytes_out_total",
        "counter",
        "Bytes written to RTMP connections (media, control and commands).",
        state.traffic.bytes_out(),
    );

    out.metric(
        "ringcast_http_flv_bytes_out_total",
        "counter",
        "Bytes written to HTTP-FLV players (heads, FLV tags, chunk framing).",
        state.traffic.flv_bytes_out(),
    );

    out.metric(
        "ringcast_log_lines_suppressed_total",
        "counter",
        "Log lines about connections that never completed connect, suppressed past the node-wide budget (20 a second).",
        state.early_log.total_suppressed(),
    );

    let cluster = state.cluster.get();
    out.metric(
        "ringcast_cluster_enabled",
        "gauge",
        "1 when the node gossips with a cluster (cluster.secret is set).",
        u64::from(state.cluster_enabled),
    );
    let view = cluster.map(|c| c.view());
    let nodes = view.as_ref().map(|v| v.nodes()).unwrap_or_default();
    out.metric(
        "ringcast_cluster_nodes_live",
        "gauge",
        "Cluster nodes the failure detector considers alive, this one included.",
        nodes.iter().filter(|n| n.live).count() as u64,
    );
    out.metric(
        "ringcast_cluster_nodes_known",
        "gauge",
        "Cluster nodes known, dead ones not yet forgotten included.",
        nodes.len() as u64,
    );
    out.metric(
        "ringcast_cluster_ring_members",
        "gauge",
        "Origins in the ring (live, ready, not draining).",
        view.as_ref().map_or(0, |v| v.ring().members().len() as u64),
    );
    out.metric(
        "ringcast_cluster_streams",
        "gauge",
        "Streams live origins advertise, cluster-wide.",
        view.as_ref()
            .map_or(0, |v| v.locator().streams().len() as u64),
    );
    out.metric(
        "ringcast_cluster_duplicate_node_ids",
        "gauge",
        "Node ids used by more than one live node (briefly after a crash and restart; a misconfiguration if it lasts).",
        view.as_ref().map_or(0, |v| v.duplicate_ids().len() as u64),
    );
    out.metric(
        "ringcast_cluster_state_bytes",
        "gauge",
        "Bytes of gossiped state this node holds for all known nodes.",
        view.as_ref().map_or(0, |v| v.state_bytes() as u64),
    );
    let gossip = cluster.map(|c| c.gossip_stats()).unwrap_or_default();
    out.metric(
        "ringcast_gossip_bad_datagrams_total",
        "counter",
        "Gossip datagrams dropped before chitchat: bad or missing tag (wrong secret or cluster id), malformed frame.",
        gossip.bad_datagrams,
    );
    out.metric(
        "ringcast_gossip_replayed_total",
        "counter",
        "Authenticated gossip datagrams refused as replays or sent outside the time window (clock skew).",
        gossip.replayed,
    );
    out.metric(
        "ringcast_gossip_undecodable_total",
        "counter",
        "Authenticated gossip messages chitchat could not parse (version skew).",
        gossip.undecodable,
    );
    out.metric(
        "ringcast_gossip_datagrams_sent_total",
        "counter",
        "Gossip datagrams sent.",
        gossip.datagrams_sent,
    );
    out.metric(
        "ringcast_gossip_datagrams_received_total",
        "counter",
        "Authenticated gossip datagrams received.",
        gossip.datagrams_received,
    );
    out.metric(
        "ringcast_gossip_bytes_sent_total",
        "counter",
        "Gossip bytes sent, framing included.",
        gossip.bytes_sent,
    );
    out.metric(
        "ringcast_gossip_bytes_received_total",
        "counter",
        "Authenticated gossip bytes received, framing included.",
        gossip.bytes_received,
    );
    relays(&mut out, state);
    access(&mut out, state);
    hooks(&mut out, state);
    out.0
}

/// `ringcast_hook_duration_seconds{call}` (a histogram of decision hooks' answers) and
/// `ringcast_hook_notifications_total{result}`, when hooks are configured.
fn hooks(out: &mut Out, state: &HttpState) {
    use crate::access::hooks::LATENCY_BUCKETS_MS;
    use crate::access::Action;
    let Some(hooks) = &state.hooks else {
        return;
    };
    out.family(
        "ringcast_hook_duration_seconds",
        "histogram",
        "Time decision hooks (on_connect, on_publish, on_play) took to answer, cache hits excluded.",
    );
    for action in [Action::Connect, Action::Publish, Action::Play] {
        let h = hooks.latency_of(action);
        let call = action.as_str();
        for (ms, count) in LATENCY_BUCKETS_MS.iter().zip(h.le.iter()) {
            let le = *ms as f64 / 1000.0;
            let _ = writeln!(
                out.0,
                "ringcast_hook_duration_seconds_bucket{{call=\"{call}\",le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out.0,
            "ringcast_hook_duration_seconds_bucket{{call=\"{call}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out.0,
            "ringcast_hook_duration_seconds_sum{{call=\"{call}\"}} {}",
            h.sum_seconds()
        );
        let _ = writeln!(
            out.0,
            "ringcast_hook_duration_seconds_count{{call=\"{call}\"}} {}",
            h.count
        );
    }
    let n = hooks.notify_stats();
    out.family(
        "ringcast_hook_notifications_total",
        "counter",
        "Notification hooks (on_publish_done, on_play_done, on_disconnect): sent, failed after retries, dropped (queue full).",
    );
    for (result, count) in [
        ("sent", n.sent),
        ("failed", n.failed),
        ("dropped", n.dropped),
    ] {
        let _ = writeln!(
            out.0,
            "ringcast_hook_notifications_total{{result=\"{result}\"}} {count}"
        );
    }
}

/// `ringcast_access_decisions_total{action, checker, result}`: every checker's verdict (checker
/// "none" for actions without rules).
fn access(out: &mut Out, state: &HttpState) {
    out.family(
        "ringcast_access_decisions_total",
        "counter",
        "Access verdicts by action (connect, publish, play), checker (token, jwt, hook, cidr; none: no rules) and result (allow, deny, redirect).",
    );
    for ((action, checker, result), count) in state.access.counts() {
        let _ = writeln!(
            out.0,
            "ringcast_access_decisions_total{{action=\"{}\",checker=\"{checker}\",result=\"{result}\"}} {count}",
            action.as_str()
        );
    }
}

/// `ringcast_relays{direction, state}`: running relays of this node, every combination listed
/// (0 included) so that dashboards see a stable set of series.
fn relays(out: &mut Out, state: &HttpState) {
    use crate::relay::RelayState;
    let statuses = state.relays.get().map(|r| r.statuses()).unwrap_or_default();
    out.family(
        "ringcast_relays",
        "gauge",
        "Relays of this node: pulls of streams held elsewhere and forwarded publishers, by state.",
    );
    let states = [
        RelayState::Connecting,
        RelayState::Pulling,
        RelayState::Pushing,
        RelayState::Waiting,
        RelayState::Retrying,
    ];
    for direction in ["pull", "push"] {
        for relay_state in &states {
            let count = statuses
                .iter()
                .filter(|r| r.direction == direction && r.state == *relay_state)
                .count();
            let _ = writeln!(
                out.0,
                "ringcast_relays{{direction=\"{direction}\",state=\"{}\"}} {count}",
                relay_state.as_str()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Role;
    use crate::http::Health;
    use crate::hub::{Hub, HubConfig};

    #[test]
    fn standalone_exposition_is_well_formed() {
        let hub = Hub::new(HubConfig::default());
        let _publisher = hub.publish("live/a", 1);
        let (_player, _) = hub.play("live/a").expect("play");
        let (_waiting, _) = hub.play("live/b").expect("play");
        let state = HttpState {
            node_id: "node \"1\"\\".into(),
            role: Role::Origin,
            hub,
            cluster_enabled: false,
            cluster: Default::default(),
            relays: Default::default(),
            health: Arc::new(Health::default()),
            traffic: Arc::default(),
            early_log: Arc::new(crate::server::log_limit::RateLimitedLog::new(
                1,
                std::time::Duration::from_secs(1),
            )),
            admin_token: String::new(),
            clients: Arc::default(),
            access: Arc::new(crate::access::rules::Access::open()),
            hooks: None,
            node_key: Default::default(),
            drain: Default::default(),
        };
        state.traffic.wrote(4096);
        let text = render(&state);
        assert!(text.contains(r#"ringcast_info{node_id="node \"1\"\\",role="origin""#));
        for line in [
            "ringcast_streams 2",
            "ringcast_publishers 1",
            "ringcast_players 2",
            "ringcast_ready 0",
            "ringcast_cluster_enabled 0",
            "ringcast_gossip_bad_datagrams_total 0",
            "ringcast_rtmp_bytes_in_total 0",
            "ringcast_rtmp_bytes_out_total 4096",
            "ringcast_relays{direction=\"pull\",state=\"pulling\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Every sample has a HELP and TYPE of its family, once.
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            let types = text
                .lines()
                .filter(|l| l.starts_with(&format!("# TYPE {name} ")))
                .count();
            assert_eq!(types, 1, "{name}");
        }
    }
}
