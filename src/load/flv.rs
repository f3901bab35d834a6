//! FLV file reading for the load tool's file publisher: the tags, in order.

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script data: the same numbers as RTMP message types.
    pub type_id: u8,
    pub timestamp: u32,
    pub data: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("not an FLV file (no FLV signature)")]
    Signature,
    #[error("FLV tag at byte {0} runs past the end of the file")]
    Truncated(usize),
    #[error("FLV file has no audio or video tags")]
    Empty,
}

pub fn parse(file: Bytes) -> Result<Vec<FlvTag>, FlvError> {
    if file.len() < 9 || &file[..3] != b"FLV" {
        return Err(FlvError::Signature);
    }
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    let mut pos = header_len.max(9) + 4;
    let mut tags = Vec::new();
    while pos + 11 <= file.len() {
        let h = &file[pos..pos + 11];
        let size = (h[1] as usize) << 16 | (h[2] as usize) << 8 | h[3] as usize;
        let ts = (h[7] as u32) << 24 | (h[4] as u32) << 16 | (h[5] as u32) << 8 | h[6] as u32;
        let start = pos + 11;
        let end = start + size;
        if end > file.len() {
            // A recording cut short: keep what is whole.
            if tags.is_empty() {
                return Err(FlvError::Truncated(pos));
            }
            break;
        }
        // Filtered/encrypted tags (bit 5) are not ours to publish.
        if h[0] & 0x20 == 0 && matches!(h[0] & 0x1f, 8 | 9 | 18) {
            tags.push(FlvTag {
                type_id: h[0] & 0x1f,
                timestamp: ts,
                data: file.slice(start..end),
            });
        }
        pos = end + 4;
    }
    if !tags.iter().any(|t| t.type_id == 8 || t.type_id == 9) {
        return Err(FlvError::Empty);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(type_id: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let mut t = vec![type_id];
        t.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(data);
        t.extend_from_slice(&(data.len() as u32 + 11).to_be_bytes());
        t
    }

    #[test]
    fn parses_tags_and_refuses_non_flv() {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        f.extend(tag(18, 0, b"meta"));
        f.extend(tag(9, 0, &[0x17, 0, 0, 0, 0]));
        f.extend(tag(8, 0x0100_0023, &[0xaf, 1]));
        let tags = parse(Bytes::from(f.clone())).expect("flv");
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[2].timestamp, 0x0100_0023);
        assert_eq!(
            parse(Bytes::from_static(b"GIF89a....")).err(),
            Some(FlvError::Signature)
        );
        // A cut recording keeps its whole tags.
        f.truncate(f.len() - 5);
        assert_eq!(parse(Bytes::from(f)).expect("partial").len(), 2);
    }
}
