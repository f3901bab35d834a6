//! Synthetic media for the load tool: real FLV tag headers (AVC sequence header, keyframes,
//! inter frames, AAC) around payloads that carry a send timestamp and a sequence number, so
//! players can measure end-to-end delay and loss through any RTMP server.

use std::time::{SystemTime, UNIX_EPOCH};

/// An AVCDecoderConfigurationRecord from x264 (320x240), as a video tag body.
pub const AVC_SEQUENCE_HEADER: &[u8] = &[
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0xf4, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x18, 0x67, 0xf4, 0x00,
    0x0d, 0x91, 0x96, 0x81, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03,
    0x03, 0x28, 0xf1, 0x42, 0xaa, 0x01, 0x00, 0x05, 0x68, 0xce, 0x0f, 0x19, 0x20,
];
/// AAC-LC 44.1 kHz stereo AudioSpecificConfig as an audio tag body.
pub const AAC_SEQUENCE_HEADER: &[u8] = &[0xaf, 0x00, 0x12, 0x10];

/// Marks a payload stamped by the load tool.
const STAMP_MAGIC: &[u8; 4] = b"RCLT";
/// Where the stamp starts: after the 5-byte AVC tag header.
const STAMP_AT: usize = 5;
pub const STAMP_LEN: usize = 4 + 8 + 4;

/// Microseconds since the Unix epoch: comparable across processes on one machine.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes magic, send time and sequence number into a video payload at `STAMP_AT`.
pub fn stamp(payload: &mut [u8], seq: u32) {
    if payload.len() >= STAMP_AT + STAMP_LEN {
        payload[STAMP_AT..STAMP_AT + 4].copy_from_slice(STAMP_MAGIC);
        payload[STAMP_AT + 4..STAMP_AT + 12].copy_from_slice(&now_micros().to_be_bytes());
        payload[STAMP_AT + 12..STAMP_AT + 16].copy_from_slice(&seq.to_be_bytes());
    }
}

/// The UUID of the load tool's SEI message (user data unregistered).
const SEI_UUID: &[u8; 16] = b"ringcast-load-ts";
/// Bytes of the SEI message after its UUID: send time and sequence number as hex digits, so
/// that no run of zero bytes needs emulation prevention.
const SEI_STAMP_LEN: usize = 16 + 8;

/// `payload` (a legacy-FLV AVC NALU tag body) with an SEI NAL unit carrying the send time and
/// `seq` put before its NAL units: the picture still decodes and servers that parse H.264
/// (SRS) accept it. Other payloads get `None`.
pub fn with_sei_stamp(payload: &[u8], seq: u32) -> Option<Vec<u8>> {
    // AVC (codec 7), NALU packet (type 1).
    if payload.len() < 5 || payload[0] & 0x0f != 7 || payload[1] != 1 {
        return None;
    }
    let size = 16 + SEI_STAMP_LEN;
    // NAL header, payload type 5, payload size, UUID, stamp, rbsp stop bit.
    let nal_len = 1 + 1 + 1 + size + 1;
    let mut out = Vec::with_capacity(payload.len() + 4 + nal_len);
    out.extend_from_slice(&payload[..5]);
    out.extend_from_slice(&(nal_len as u32).to_be_bytes());
    out.extend_from_slice(&[0x06, 0x05, size as u8]);
    out.extend_from_slice(SEI_UUID);
    out.extend_from_slice(format!("{:016x}{seq:08x}", now_micros()).as_bytes());
    out.push(0x80);
    out.extend_from_slice(&payload[5..]);
    Some(out)
}

/// Reads (send time, sequence number) from a stamped payload (either form).
pub fn read_stamp(payload: &[u8]) -> Option<(u64, u32)> {
    if let Some(sei) = payload.get(STAMP_AT + 4..STAMP_AT + 7 + 16 + SEI_STAMP_LEN) {
        if sei[..3] == [0x06, 0x05, (16 + SEI_STAMP_LEN) as u8] && &sei[3..19] == SEI_UUID {
            let hex = std::str::from_utf8(&sei[19..]).ok()?;
            let sent = u64::from_str_radix(hex.get(..16)?, 16).ok()?;
            let seq = u32::from_str_radix(hex.get(16..)?, 16).ok()?;
            return Some((sent, seq));
        }
    }
    let s = payload.get(STAMP_AT..STAMP_AT + STAMP_LEN)?;
    if &s[..4] != STAMP_MAGIC {
        return None;
    }
    let sent = u64::from_be_bytes([s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11]]);
    let seq = u32::from_be_bytes([s[12], s[13], s[14], s[15]]);
    Some((sent, seq))
}

/// Frame sizes for a target bitrate: a keyframe is `KEY_RATIO` inter frames.
#[derive(Debug, Clone, Copy)]
pub struct SynthProfile {
    pub video_bps: u64,
    pub fps: u32,
    pub gop: u32,
    pub audio_bps: u64,
}

const KEY_RATIO: u64 = 4;
/// AAC at 44.1 kHz: 1024 samples a frame.
pub const AUDIO_FPS: f64 = 44100.0 / 1024.0;

impl SynthProfile {
    pub fn inter_bytes(&self) -> usize {
        let per_gop = self.video_bps / 8 * self.gop as u64 / self.fps.max(1) as u64;
        let size = per_gop / (self.gop as u64 + KEY_RATIO - 1).max(1);
        (size as usize).max(STAMP_AT + STAMP_LEN)
    }

    pub fn key_bytes(&self) -> usize {
        self.inter_bytes() * KEY_RATIO as usize
    }

    pub fn audio_bytes(&self) -> usize {
        ((self.audio_bps as f64 / 8.0 / AUDIO_FPS) as usize).max(4)
    }

    /// A video payload for frame `n` (keyframe when `n % gop == 0`), stamped.
    pub fn video(&self, n: u32) -> Vec<u8> {
        let key = n.is_multiple_of(self.gop.max(1));
        let mut body = vec![
            0u8;
            if key {
                self.key_bytes()
            } else {
                self.inter_bytes()
            }
        ];
        body[0] = if key { 0x17 } else { 0x27 };
        body[1] = 1;
        for (i, b) in body.iter_mut().enumerate().skip(STAMP_AT + STAMP_LEN) {
            *b = (i as u8).wrapping_mul(151) ^ n as u8;
        }
        stamp(&mut body, n);
        body
    }

    pub fn audio(&self, n: u32) -> Vec<u8> {
        let mut body = vec![n as u8; self.audio_bytes()];
        body[0] = 0xaf;
        body[1] = 1;
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sei_stamp_keeps_the_nal_units_and_reads_back() {
        // A legacy AVC NALU tag: header, one 4-byte-length NAL unit.
        let body = [0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x9a, 0x02];
        let stamped = with_sei_stamp(&body, 77).expect("AVC");
        let (sent, seq) = read_stamp(&stamped).expect("stamp");
        assert_eq!(seq, 77);
        assert!(now_micros() - sent < 10_000_000);
        // The original NAL unit follows the SEI one, whole.
        assert!(stamped.ends_with(&body[5..]));
        let sei_len = u32::from_be_bytes([stamped[5], stamped[6], stamped[7], stamped[8]]);
        assert_eq!(&stamped[9 + sei_len as usize..], &body[5..]);
        // No two zero bytes in a row inside the SEI payload.
        let sei = &stamped[9..9 + sei_len as usize];
        assert!(!sei.windows(2).any(|w| w == [0, 0]));
        // Not AVC, or a sequence header: left alone.
        assert!(with_sei_stamp(&[0x2c, 1, 0, 0, 0, 1], 1).is_none());
        assert!(with_sei_stamp(&[0x17, 0, 0, 0, 0, 1], 1).is_none());
    }

    #[test]
    fn stamps_round_trip_and_sizes_match_the_bitrate() {
        let p = SynthProfile {
            video_bps: 2_500_000,
            fps: 30,
            gop: 60,
            audio_bps: 64_000,
        };
        let v = p.video(61);
        assert_eq!(read_stamp(&v).map(|s| s.1), Some(61));
        assert_eq!(v[0], 0x27);
        assert_eq!(p.video(60)[0], 0x17);
        let gop_bytes = p.key_bytes() + 59 * p.inter_bytes();
        let bps = gop_bytes as f64 * 8.0 / 2.0;
        assert!((bps - 2_500_000.0).abs() / 2_500_000.0 < 0.01, "{bps}");
        assert!(read_stamp(&[0x27, 1, 0, 0, 0, 1, 2]).is_none());
    }
}
