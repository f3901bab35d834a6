//! What a server session does with the bytes of an anonymous client, up to its commands: the
//! chunk reader with the server's limits (media held to the command limit until publish),
//! then `Command::decode` and the name checks of connect, play and publish.
//!
//! Invariants: no panic; no command message passes the command limit; a decoded command
//! holds at most `MAX_COMMAND_VALUES` AMF values, nested ones included; the name checks
//! accept only names within their limits.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::amf0::Amf0Value;
use ringcast::rtmp::chunk::{ChunkReader, ReaderLimits};
use ringcast::rtmp::command::{Command, MAX_COMMAND_VALUES};
use ringcast::rtmp::{MSG_COMMAND_AMF0, MSG_COMMAND_AMF3};
use ringcast::server::limits;

const LIMITS: ReaderLimits = ReaderLimits {
    max_chunk_size: 64 << 10,
    max_message_size: 1 << 20,
    max_command_size: 64 << 10,
    max_data_size: 256 << 10,
    max_buffered: 2 << 20,
    max_chunk_streams: 16,
};

fn values(v: &Amf0Value) -> usize {
    1 + match v {
        Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => p.iter().map(|(_, v)| values(v)).sum(),
        Amf0Value::TypedObject { properties, .. } => properties.iter().map(|(_, v)| values(v)).sum(),
        Amf0Value::StrictArray(items) => items.iter().map(values).sum(),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = ChunkReader::new(LIMITS);
    reader.allow_media(false);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = reader.read(&mut buf) {
        assert!(
            msg.payload.len() <= LIMITS.max_command_size,
            "type {} message of {} bytes before publish",
            msg.type_id,
            msg.payload.len()
        );
        if msg.type_id != MSG_COMMAND_AMF0 && msg.type_id != MSG_COMMAND_AMF3 {
            continue;
        }
        let Ok(cmd) = Command::decode(msg.type_id, &msg.payload) else {
            continue;
        };
        // Name and transaction, the object and the arguments (a missing transaction or object
        // is filled in by `decode`, hence the 2 of slack).
        let total = 2 + values(&cmd.object) + cmd.args.iter().map(values).sum::<usize>();
        assert!(total <= MAX_COMMAND_VALUES + 2, "{total} values decoded");
        let field = |k: &str| cmd.object.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (app, tc_url) = (field("app"), field("tcUrl"));
        if limits::check_connect(app, tc_url, "").is_ok() {
            assert!(app.len() <= limits::MAX_APP && tc_url.len() <= limits::MAX_TC_URL);
        }
        if let Some(name) = cmd.arg_str(0) {
            let key = format!("live/{}", name.split('?').next().unwrap_or(""));
            if limits::check_stream(name, &key).is_ok() {
                assert!(name.len() <= limits::MAX_STREAM_NAME + limits::MAX_QUERY + 1);
            }
        }
    }
});
