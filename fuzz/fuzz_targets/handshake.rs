//! The server handshake on arbitrary bytes. The first byte picks how the rest is split into
//! reads.
//!
//! Invariants: no panic; when it completes, the replies were S0+S1+S2 (3073 bytes) and the
//! bytes handed on are exactly those after C0+C1+C2.

#![no_main]

mod pieces;

use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::handshake::{Handshake, Step, C0C1_LEN};

/// C0 + C1 + C2 (and S0 + S1 + S2).
const HANDSHAKE_LEN: usize = C0C1_LEN + 1536;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let mut hs = Handshake::server();
    let mut fed = 0;
    let mut replied = 0;
    for read in pieces::pieces(sel, data) {
        fed += read.len();
        match hs.process(read) {
            Ok(Step::Continue { reply }) => replied += reply.len(),
            Ok(Step::Done { reply, remaining }) => {
                replied += reply.len();
                assert_eq!(replied, HANDSHAKE_LEN, "reply is not S0+S1+S2");
                assert!(fed >= HANDSHAKE_LEN, "done after only {fed} bytes");
                assert_eq!(
                    remaining,
                    &data[HANDSHAKE_LEN..fed],
                    "wrong bytes handed on"
                );
                return;
            }
            // The session closes on an error; nothing more is fed.
            Err(_) => return,
        }
    }
});
