//! Splits an input into the pieces a socket might deliver, so targets exercise partial reads.

/// Cuts `data` into consecutive non-empty pieces. `sel == 0` delivers everything at once;
/// otherwise piece lengths are drawn from `1..=sel` by a xorshift seeded with `sel`, so
/// `sel == 1` is byte-by-byte and larger values mix short and long reads.
pub fn pieces(sel: u8, data: &[u8]) -> Vec<&[u8]> {
    if sel == 0 {
        return vec![data];
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(sel);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (1 + state % u64::from(sel)) as usize;
        let (head, tail) = rest.split_at(len.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}
