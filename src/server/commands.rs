//! NetConnection and NetStream commands: what each one does to the session and what it answers.

use tracing::{debug, info};

use super::clip::Clip;
use super::limits::{self, cut, MAX_INFO_FIELD};
use super::session::{ConnectInfo, Session, SessionError, WINDOW_ACK_SIZE};
use crate::access::{Action, Outcome};
use crate::relay::{ClientInfo, Route};
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::command::{status_info, Command};
use crate::rtmp::message::{self, UserControl};
use crate::rtmp::{MSG_SET_CHUNK_SIZE, MSG_SET_PEER_BANDWIDTH, MSG_WINDOW_ACK_SIZE};

impl Session {
    pub(super) async fn on_command(
        &mut self,
        cmd: Command,
        stream_id: u32,
    ) -> Result<(), SessionError> {
        debug!(name = %Clip(&cmd.name), txn = cmd.transaction, "command");
        if self.connect.is_none() && cmd.name != "connect" {
            self.call_failed(&cmd, "connect first");
            return Ok(());
        }
        // Each of these may start work on this node (a stream, a waiting player, an upstream
        // pull): a connection that asks faster than a person could is closed.
        if matches!(cmd.name.as_str(), "createStream" | "play" | "publish") && !self.calls.take() {
            let why = "too many play, publish or createStream calls";
            self.call_failed(&cmd, why);
            self.closing = Some(why.into());
            return Ok(());
        }
        match cmd.name.as_str() {
            "connect" if self.connect.is_some() => {
                self.call_failed(&cmd, "already connected");
                self.closing = Some("second connect".into());
                Ok(())
            }
            "connect" => self.on_connect(cmd).await,
            "createStream" => {
                match self.create_stream() {
                    Some(id) => self.result(&cmd, Amf0Value::Null, vec![(id as f64).into()]),
                    None => self.call_failed(&cmd, "too many streams on this connection"),
                }
                Ok(())
            }
            "releaseStream" => {
                self.result(&cmd, Amf0Value::Null, vec![Amf0Value::Undefined]);
                Ok(())
            }
            "FCPublish" => {
                let name = cmd.arg_str(0).unwrap_or("").to_string();
                self.result(&cmd, Amf0Value::Null, vec![Amf0Value::Undefined]);
                let info = Amf0Value::object([
                    ("code", "NetStream.Publish.Start".into()),
                    ("description", name.into()),
                ]);
                self.send_command(
                    0,
                    &Command::new("onFCPublish", 0.0, Amf0Value::Null, vec![info]),
                );
                Ok(())
            }
            "FCUnpublish" => {
                let name = cmd.arg_str(0).unwrap_or("").to_string();
                let info = Amf0Value::object([
                    ("code", "NetStream.Unpublish.Success".into()),
                    ("description", name.into()),
                ]);
                self.send_command(
                    0,
                    &Command::new("onFCUnpublish", 0.0, Amf0Value::Null, vec![info]),
                );
                self.result(&cmd, Amf0Value::Null, vec![Amf0Value::Undefined]);
                self.stop_publishing("FCUnpublish");
                Ok(())
            }
            "publish" => self.on_publish(&cmd, stream_id).await,
            "play" => self.on_play(&cmd, stream_id).await,
            "pause" => {
                let pause = cmd.args.first().and_then(|v| v.as_bool()).unwrap_or(true);
                self.on_pause(pause, stream_id);
                Ok(())
            }
            "receiveAudio" | "receiveVideo" => {
                let on = cmd.args.first().and_then(|v| v.as_bool()).unwrap_or(true);
                if let Some(p) = self.playing.as_mut() {
                    if cmd.name == "receiveAudio" {
                        p.receive_audio = on;
                    } else {
                        p.receive_video = on;
                    }
                }
                Ok(())
            }
            "deleteStream" => {
                let sid = cmd.arg_number(0).map(|n| n as u32).unwrap_or(stream_id);
                self.close_stream(sid, "deleteStream");
                self.created_streams.retain(|&s| s != sid);
                Ok(())
            }
            "closeStream" => {
                self.close_stream(stream_id, "closeStream");
                Ok(())
            }
            "getStreamLength" => {
                self.result(&cmd, Amf0Value::Null, vec![0.0.into()]);
                Ok(())
            }
            "_checkbw" => {
                self.result(&cmd, Amf0Value::Null, vec![]);
                Ok(())
            }
            // Answers to calls we made, and notifications that need no answer.
            "_result" | "_error" | "onStatus" | "onBWDone" | "onBWCheck" => Ok(()),
            other => {
                let msg = format!("unknown command {}", Clip(other));
                debug!(command = %Clip(other), "unknown command answered with _error");
                self.call_failed(&cmd, &msg);
                Ok(())
            }
        }
    }

    async fn on_connect(&mut self, cmd: Command) -> Result<(), SessionError> {
        let obj = &cmd.object;
        let field = |name: &str| obj.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let app_raw = field("app");
        let tc_url = field("tcUrl");
        let (app, app_query) = split_query(app_raw);
        let query = if !app_query.is_empty() {
            app_query
        } else {
            split_query(tc_url).1
        };
        let app = app.trim_matches('/');
        if let Err(why) = limits::check_connect(app, tc_url, query) {
            let why = why.to_string();
            let info = status_info("error", "NetConnection.Connect.Rejected", &why);
            self.send_command(
                0,
                &Command::new("_error", cmd.transaction, Amf0Value::Null, vec![info]),
            );
            self.closing = Some(format!("connect refused: {why}"));
            return Ok(());
        }
        let object_encoding = obj
            .get("objectEncoding")
            .and_then(|v| v.as_number())
            .unwrap_or(0.0);
        // Only a relay with a valid credential is a relay; `ringcastHops` alone is ignored.
        let relay = self.verify_relay(
            obj.get(crate::access::relay_credential::PROPERTY)
                .and_then(|v| v.as_str()),
        );
        let hops = match relay {
            Some(_) => obj
                .get(crate::client::HOPS_PROPERTY)
                .and_then(|v| v.as_number())
                .map_or(1, |n| n.clamp(1.0, 1000.0) as u32),
            None => 0,
        };
        let info = ConnectInfo {
            app: app.to_string(),
            tc_url: tc_url.to_string(),
            query: query.to_string(),
            flash_ver: cut(field("flashVer"), MAX_INFO_FIELD),
            swf_url: cut(field("swfUrl"), MAX_INFO_FIELD),
            page_url: cut(field("pageUrl"), MAX_INFO_FIELD),
            object_encoding,
            hops,
            relay,
        };
        info!(
            app = %info.app,
            tc_url = %Clip(&info.tc_url),
            flash_ver = %Clip(&info.flash_ver),
            "connect"
        );
        debug!(swf_url = %Clip(&info.swf_url), page_url = %Clip(&info.page_url), "connect details");
        self.span.record("app", info.app.as_str());
        self.registered
            .entry
            .set_app(&info.app, info.relay.is_some());
        // The connect decision needs the connect fields: they are kept first, and dropped
        // again if the rules refuse the client.
        self.connect = Some(info);
        match self.decide(Action::Connect, "", "").await {
            Outcome::Allow => {}
            Outcome::Deny(why) => {
                self.connect = None;
                info!(reason = %Clip(&why), "connect denied");
                let info = status_info("error", "NetConnection.Connect.Rejected", &why);
                self.send_command(
                    0,
                    &Command::new("_error", cmd.transaction, Amf0Value::Null, vec![info]),
                );
                self.closing = Some(format!("connect denied: {why}"));
                return Ok(());
            }
            Outcome::Redirect(to) if to.starts_with("rtmp://") || to.starts_with("rtmps://") => {
                // FMS: the connect's `_error` carries the tcUrl to go to.
                self.connect = None;
                let tc_url = to;
                info!(to = %Clip(&tc_url), "connect redirected");
                let ex = Amf0Value::object([
                    ("code", 302.0.into()),
                    ("redirect", tc_url.as_str().into()),
                ]);
                let info = Amf0Value::object([
                    ("level", "error".into()),
                    ("code", "NetConnection.Connect.Rejected".into()),
                    (
                        "description",
                        format!("RTMP 302 redirect to {tc_url}").into(),
                    ),
                    ("ex", ex),
                ]);
                self.send_command(
                    0,
                    &Command::new("_error", cmd.transaction, Amf0Value::Null, vec![info]),
                );
                self.close_at = Some(tokio::time::Instant::now() + REDIRECT_GRACE);
                return Ok(());
            }
            Outcome::Redirect(to) => {
                // A stream name means nothing before a stream is asked for.
                self.connect = None;
                let why = format!("redirect of a connect to {to:?}, not an rtmp:// URL");
                let info = status_info("error", "NetConnection.Connect.Rejected", &why);
                self.send_command(
                    0,
                    &Command::new("_error", cmd.transaction, Amf0Value::Null, vec![info]),
                );
                self.closing = Some(why);
                return Ok(());
            }
        }

        self.control(MSG_WINDOW_ACK_SIZE, &message::u32_payload(WINDOW_ACK_SIZE));
        self.control(
            MSG_SET_PEER_BANDWIDTH,
            &message::set_peer_bandwidth(WINDOW_ACK_SIZE, 2),
        );
        let chunk_size = self.ctx.limits.chunk_size;
        self.control(MSG_SET_CHUNK_SIZE, &message::u32_payload(chunk_size as u32));
        self.out.set_chunk_size(chunk_size);

        let props = Amf0Value::object([
            ("fmsVer", "FMS/3,5,7,7009".into()),
            ("capabilities", 31.0.into()),
            ("mode", 1.0.into()),
        ]);
        let result = Amf0Value::object([
            ("level", "status".into()),
            ("code", "NetConnection.Connect.Success".into()),
            ("description", "Connection succeeded.".into()),
            ("objectEncoding", object_encoding.into()),
            (
                "data",
                Amf0Value::EcmaArray(vec![
                    ("server".into(), "ringcast".into()),
                    ("version".into(), env!("CARGO_PKG_VERSION").into()),
                ]),
            ),
        ]);
        if self.balance_at_connect(&cmd) {
            return Ok(());
        }
        self.send_command(
            0,
            &Command::new("_result", cmd.transaction, props, vec![result]),
        );
        Ok(())
    }

    /// FMS-style balancing at connect: when the stream is already named (a `stream` argument
    /// in the connect query, or a string first argument after the command object) and the
    /// balancer sends its player elsewhere, the connect's `_error` carries the RTMP 302 (`ex:
    /// {code: 302, redirect: tcUrl, redirect2: stream URL}`). True when it did.
    fn balance_at_connect(&mut self, cmd: &Command) -> bool {
        let Some(conn) = self.connect.as_ref() else {
            return false;
        };
        let named = super::decide::parse_query(&conn.query)
            .into_iter()
            .find(|(k, _)| k == "stream")
            .map(|(_, v)| v)
            .or_else(|| cmd.arg_str(0).map(str::to_string));
        let Some(name) = named.filter(|n| !n.is_empty()) else {
            return false;
        };
        let key = super::session::stream_key(&conn.app, &name);
        if super::limits::check_stream(&name, &key).is_err() {
            return false;
        }
        let Some(relays) = self.ctx.relays.get() else {
            return false;
        };
        let client = ClientInfo {
            key: &key,
            app: &conn.app,
            name: &name,
            connect_query: &conn.query,
            hops: conn.hops,
        };
        let Some(Route::Redirect { tc_url, url, .. }) = relays.balance(&client) else {
            return false;
        };
        info!(to = %Clip(&url), "connect balanced to another edge");
        let ex = Amf0Value::object([
            ("code", 302.0.into()),
            ("redirect", tc_url.as_str().into()),
            ("redirect2", url.as_str().into()),
        ]);
        let info = Amf0Value::object([
            ("level", "error".into()),
            ("code", "NetConnection.Connect.Rejected".into()),
            ("description", format!("RTMP 302 redirect to {url}").into()),
            ("ex", ex),
        ]);
        self.send_command(
            0,
            &Command::new("_error", cmd.transaction, Amf0Value::Null, vec![info]),
        );
        self.close_at = Some(tokio::time::Instant::now() + REDIRECT_GRACE);
        true
    }

    /// Answers a call with `_result`.
    pub(super) fn result(&mut self, cmd: &Command, object: Amf0Value, args: Vec<Amf0Value>) {
        self.send_command(0, &Command::new("_result", cmd.transaction, object, args));
    }

    /// Answers a call with `_error` / NetConnection.Call.Failed.
    pub(super) fn call_failed(&mut self, cmd: &Command, description: &str) {
        let info = status_info("error", "NetConnection.Call.Failed", description);
        self.send_command(
            0,
            &Command::new("_error", cmd.transaction, Amf0Value::Null, vec![info]),
        );
    }

    /// Sends `onStatus` on message stream `stream_id`.
    pub(super) fn on_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let info = status_info(level, code, description);
        self.send_command(
            stream_id,
            &Command::new("onStatus", 0.0, Amf0Value::Null, vec![info]),
        );
    }

    /// Routes a play or publish through the cluster (`None` on a standalone node: local).
    pub(super) fn route(&self, key: &str, name: &str, publish: bool) -> Option<Route> {
        let relays = self.ctx.relays.get()?;
        let conn = self.connect.as_ref()?;
        let client = ClientInfo {
            key,
            app: &conn.app,
            name,
            connect_query: &conn.query,
            hops: self.hops_for(key),
        };
        Some(if publish {
            relays.route_publish(&client)
        } else {
            relays.route_play(&client)
        })
    }

    /// Sends an RTMP 302 the way SRS does after play/publish: an `onStatus` on message stream
    /// 0 with level error, NetConnection.Connect.Rejected and `ex: {code: 302, redirect:
    /// tcUrl, redirect2: full URL}`; the client has 3 s to go before we close.
    pub(super) fn redirect(&mut self, tc_url: &str, url: &str) {
        info!(to = %Clip(url), "redirecting client");
        let ex = Amf0Value::object([
            ("code", 302.0.into()),
            ("redirect", tc_url.into()),
            ("redirect2", url.into()),
        ]);
        let info = Amf0Value::object([
            ("level", "error".into()),
            ("code", "NetConnection.Connect.Rejected".into()),
            ("description", format!("RTMP 302 redirect to {url}").into()),
            ("ex", ex),
        ]);
        self.send_command(
            0,
            &Command::new("onStatus", 0.0, Amf0Value::Null, vec![info]),
        );
        self.close_at = Some(tokio::time::Instant::now() + REDIRECT_GRACE);
    }

    pub(super) fn user_control(&mut self, event: UserControl) {
        self.control(crate::rtmp::MSG_USER_CONTROL, &event.encode());
    }

    fn close_stream(&mut self, stream_id: u32, why: &str) {
        if self
            .publishing
            .as_ref()
            .is_some_and(|p| p.stream_id == stream_id)
        {
            self.stop_publishing(why);
        }
        if self
            .playing
            .as_ref()
            .is_some_and(|p| p.stream_id == stream_id)
        {
            self.stop_playing(why);
        }
    }
}

/// How long a redirected client has to leave before we close the connection.
const REDIRECT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Splits `a?b` into `("a", "b")`.
pub(super) fn split_query(s: &str) -> (&str, &str) {
    match s.split_once('?') {
        Some((a, q)) => (a, q),
        None => (s, ""),
    }
}
