//! AMF0 decoding and the command envelope on arbitrary bytes.
//!
//! Invariants: no panic; whatever decodes re-encodes to bytes that decode again and re-encode
//! to the very same bytes (compared as bytes, so NaN numbers are fine); the same for commands.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::amf0;
use ringcast::rtmp::command::Command;
use ringcast::rtmp::{MSG_COMMAND_AMF0, MSG_COMMAND_AMF3};

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = amf0::decode_all(data) {
        let first = amf0::encode_all(&values);
        let again = amf0::decode_all(&first)
            .unwrap_or_else(|e| panic!("our own encoding does not decode: {e}; values {values:?}"));
        assert_eq!(
            first,
            amf0::encode_all(&again),
            "re-encoding is not stable for {values:?}"
        );
    }
    for type_id in [MSG_COMMAND_AMF0, MSG_COMMAND_AMF3] {
        if let Ok(cmd) = Command::decode(type_id, data) {
            let first = cmd.encode();
            let again = Command::decode(MSG_COMMAND_AMF0, &first)
                .unwrap_or_else(|e| panic!("our own command does not decode: {e}; {cmd:?}"));
            assert_eq!(first, again.encode(), "command re-encoding is not stable");
        }
    }
});
