//! The PROXY protocol header parser on arbitrary bytes.
//!
//! Invariants: no panic; a parsed header is never longer than its version's limit nor than
//! the input; the answer for a prefix of the input is "need more" or the same answer (a
//! header never changes meaning when more bytes arrive).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::server::proxy_header::{parse, MAX_V2};

fuzz_target!(|data: &[u8]| {
    let full = parse(data);
    if let Ok(Some(header)) = &full {
        assert!(header.len <= data.len(), "header past the input");
        assert!(header.len <= MAX_V2, "header over the limit");
        // Any longer input starting with the same header parses identically.
        let mut longer = data[..header.len].to_vec();
        longer.extend_from_slice(b"\x03trailing");
        assert_eq!(parse(&longer), full);
    }
    for cut in 0..data.len().min(64) {
        match parse(&data[..cut]) {
            Ok(None) => {}
            Ok(Some(h)) => assert_eq!(full, Ok(Some(h)), "prefix parsed differently"),
            Err(_) => assert!(full.is_err(), "prefix refused, whole accepted"),
        }
    }
});
