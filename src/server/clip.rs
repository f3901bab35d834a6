//! Client-controlled text as it may appear in log lines and spans: cut short, control
//! characters escaped.
//!
//! Owns the one rule for logging what a peer sent (app names, stream names, tcUrls, command
//! names). Must never: let a peer choose how many bytes a log line takes, or put a raw control
//! character (a newline that forges a log line) into one.

use std::fmt;

/// Characters of client text kept in a log line.
pub const LOG_CHARS: usize = 64;

/// Displays at most [`LOG_CHARS`] characters of `s`, escaped like `str::escape_debug`, then
/// `…(+N bytes)` for what was cut.
#[derive(Clone, Copy)]
pub struct Clip<'a>(pub &'a str);

impl fmt::Display for Clip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len();
        for (count, (at, c)) in self.0.char_indices().enumerate() {
            if count == LOG_CHARS {
                end = at;
                break;
            }
            write!(f, "{}", c.escape_debug())?;
        }
        if end < self.0.len() {
            write!(f, "…(+{} bytes)", self.0.len() - end)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Clip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_cut() {
        assert_eq!(Clip("live/cam1").to_string(), "live/cam1");
        let long = "x".repeat(1 << 20);
        let shown = Clip(&long).to_string();
        assert!(shown.len() < 100, "{} bytes", shown.len());
        assert!(shown.ends_with(&format!("…(+{} bytes)", (1 << 20) - LOG_CHARS)));
        assert_eq!(Clip("a\nb\u{7}").to_string(), "a\\nb\\u{7}");
        assert_eq!(format!("{:?}", Clip("x")), "\"x\"");
        // Cut on a character, never inside one.
        let wide = "é".repeat(100);
        assert!(Clip(&wide).to_string().starts_with(&"é".repeat(LOG_CHARS)));
    }
}
