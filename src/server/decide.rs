//! The session's side of access decisions: the request it shows the rules, who counts as a
//! relay, and the notifications it sends when a client stops.
//!
//! Owns: turning this connection's connect fields, stream name and address into an
//! [`access::Request`], the relay check (a valid relay credential for this very stream, never
//! `ringcastHops` alone), and query parsing. Must never: skip the rules for a connection that
//! merely claims to be a relay.

use crate::access::relay_credential::{self, Relay};
use crate::access::{Action, Notice, Outcome, Request};

use super::session::{stream_key, Session};

/// `a=1&b=%20x` -> [("a", "1"), ("b", " x")]; `+` is a space, as in forms; a bad escape is
/// kept as it is.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Session {
    /// The relay this connection proved to be in connect, if it relays `key`.
    pub(super) fn relay_for(&self, key: &str) -> Option<&Relay> {
        self.connect
            .as_ref()?
            .relay
            .as_ref()
            .filter(|relay| relay.stream == key)
    }

    /// Relay hops of this connection for `key`: its `ringcastHops` when it is a relay of this
    /// very stream, else 0 (an ordinary client).
    pub(super) fn hops_for(&self, key: &str) -> u32 {
        match (self.relay_for(key), self.connect.as_ref()) {
            (Some(_), Some(conn)) => conn.hops,
            _ => 0,
        }
    }

    /// Checks a `ringcastRelay` credential from connect; `None` when absent, invalid, or on
    /// a node without a cluster.
    pub(super) fn verify_relay(&mut self, credential: Option<&str>) -> Option<Relay> {
        let credential = credential?;
        let key = self.ctx.relay_key.get()?;
        match key.verify(credential, relay_credential::now_unix()) {
            Ok(relay) => Some(relay),
            Err(why) => {
                if self.notices.allow() {
                    tracing::info!(reason = why, "relay credential refused: an ordinary client");
                }
                None
            }
        }
    }

    /// What the rules see of this connection asking for `action` on `name` (`name?query`;
    /// empty for connect).
    pub(super) fn access_request(&self, action: Action, name: &str) -> Request {
        let conn = self.connect.as_ref();
        let app = conn.map_or("", |c| c.app.as_str());
        let (bare, stream_query) = name.split_once('?').unwrap_or((name, ""));
        let mut query = parse_query(conn.map_or("", |c| c.query.as_str()));
        query.extend(parse_query(stream_query));
        Request {
            node_id: self.ctx.node_id.clone(),
            role: self.ctx.role,
            action,
            app: app.to_string(),
            stream: bare.trim_matches('/').to_string(),
            key: if name.is_empty() {
                String::new()
            } else {
                stream_key(app, name)
            },
            query,
            tc_url: conn.map_or(String::new(), |c| c.tc_url.clone()),
            client: self.client,
            flash_ver: conn.map_or(String::new(), |c| c.flash_ver.clone()),
            swf_url: conn.map_or(String::new(), |c| c.swf_url.clone()),
            page_url: conn.map_or(String::new(), |c| c.page_url.clone()),
            conn_id: self.id,
        }
    }

    /// The rules' outcome for `action` on `name` (with `key` the stream it names): relays of
    /// this very stream and actions without rules are allowed at once.
    pub(super) async fn decide(&self, action: Action, name: &str, key: &str) -> Outcome {
        let app = self.connect.as_ref().map_or("", |c| c.app.as_str());
        if !self.ctx.access.has_rules(app, action) || self.relay_for(key).is_some() {
            return Outcome::Allow;
        }
        let request = self.access_request(action, name);
        self.ctx.access.decide(&request).await
    }

    /// Applies the rules to a play or publish of `name` (stream `key`) on message stream
    /// `stream_id`. Returns the name and key to go on with: the same, or the stream a hook's
    /// `Location` named on this node; `None` when the client was refused or sent elsewhere
    /// (the answer is queued, the connection closes after it).
    pub(super) async fn admit(
        &mut self,
        action: Action,
        name: String,
        key: String,
        stream_id: u32,
    ) -> Option<(String, String)> {
        let (refused_code, what) = match action {
            Action::Publish => ("NetStream.Publish.BadName", "publish"),
            _ => ("NetStream.Play.Failed", "play"),
        };
        match self.decide(action, &name, &key).await {
            Outcome::Allow => Some((name, key)),
            Outcome::Deny(why) => {
                tracing::info!(stream = %key, reason = %super::clip::Clip(&why), "{what} denied");
                self.on_status(stream_id, "error", refused_code, &why);
                self.closing = Some(format!("{what} denied: {why}"));
                None
            }
            Outcome::Redirect(to) if to.starts_with("rtmp://") || to.starts_with("rtmps://") => {
                self.span.record("stream", key.as_str());
                if action == Action::Play {
                    self.user_control(crate::rtmp::message::UserControl::StreamBegin(stream_id));
                    self.on_status(stream_id, "status", "NetStream.Play.Reset", "redirecting");
                    self.on_status(stream_id, "status", "NetStream.Play.Start", "redirecting");
                }
                let tc_url = tc_url_of(&to);
                self.redirect(&tc_url, &to);
                None
            }
            Outcome::Redirect(to) => {
                // nginx-rtmp: a Location that is not a URL is the stream name to use instead.
                let app = self.connect.as_ref().map_or("", |c| c.app.as_str());
                let new_key = stream_key(app, &to);
                match super::limits::check_stream(&to, &new_key) {
                    Ok(()) => {
                        tracing::info!(from = %key, to = %new_key, "{what} renamed by the rules");
                        Some((to, new_key))
                    }
                    Err(e) => {
                        let why = format!("redirected to a bad stream name: {e}");
                        self.on_status(stream_id, "error", refused_code, &why);
                        self.closing = Some(why);
                        None
                    }
                }
            }
        }
    }

    /// Tells the notification hooks that a publish or play of `name` ended, or that the
    /// connection did (`name` empty). Relays are not clients: nothing is sent for them.
    pub(super) fn notify(&self, notice: Notice, name: &str, extra: &[(&str, String)]) {
        let Some(conn) = self.connect.as_ref() else {
            return;
        };
        if conn.relay.is_some() {
            return;
        }
        let action = match notice {
            Notice::PublishDone => Action::Publish,
            Notice::PlayDone => Action::Play,
            Notice::Disconnect => Action::Connect,
        };
        let request = self.access_request(action, name);
        self.ctx.access.notify(notice, &request, extra);
    }
}

/// The tcUrl of a stream URL: `rtmp://h/app/stream?q` -> `rtmp://h/app?q`.
fn tc_url_of(url: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match path.rsplit_once('/') {
        Some((base, _)) if base.matches('/').count() >= 3 => base,
        _ => path,
    };
    if query.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_split_and_decoded() {
        assert_eq!(
            parse_query("token=a%2Fb&x=1+2&flag&&bad=%zz"),
            vec![
                ("token".to_string(), "a/b".to_string()),
                ("x".to_string(), "1 2".to_string()),
                ("flag".to_string(), String::new()),
                ("bad".to_string(), "%zz".to_string()),
            ]
        );
        assert!(parse_query("").is_empty());
        assert_eq!(
            tc_url_of("rtmp://h:1935/live/cam?token=1"),
            "rtmp://h:1935/live?token=1"
        );
        assert_eq!(tc_url_of("rtmp://h/live"), "rtmp://h/live");
        assert_eq!(parse_query("a=%e2%9c%93")[0].1, "✓");
    }
}
