//! What a media payload is: keyframe, sequence header, or coded frame. Understands the legacy FLV
//! tag bodies and Enhanced RTMP (video bit 0x80 / audio format 9 with a FourCC and packet type).
//! Payloads are passed through untouched; this module only looks.

/// What fast start and GOP caching need to know about a video payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoInfo {
    pub keyframe: bool,
    /// A decoder configuration record (AVC/HEVC sequence header, Enhanced SequenceStart).
    pub sequence_header: bool,
    /// A frame that carries no picture (video info/command frame, sequence end, metadata).
    pub command: bool,
}

/// Legacy FLV video codec ids.
const CODEC_AVC: u8 = 7;
const CODEC_HEVC_LEGACY: u8 = 12;
const CODEC_AV1_LEGACY: u8 = 13;

/// Enhanced RTMP video packet types.
const VPT_SEQUENCE_START: u8 = 0;
const VPT_SEQUENCE_END: u8 = 2;
const VPT_METADATA: u8 = 4;
const VPT_MPEG2TS_SEQUENCE_START: u8 = 5;
const VPT_MULTITRACK: u8 = 6;

const FRAME_KEY: u8 = 1;
const FRAME_COMMAND: u8 = 5;

pub fn inspect_video(payload: &[u8]) -> VideoInfo {
    let Some(&b0) = payload.first() else {
        return VideoInfo::default();
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: frame type in bits 4-6, packet type in the low nibble.
        let frame_type = (b0 >> 4) & 0x07;
        let mut packet_type = b0 & 0x0f;
        if packet_type == VPT_MULTITRACK {
            // The next byte holds the multitrack type (high nibble) and the real packet type.
            match payload.get(1) {
                Some(&b1) => packet_type = b1 & 0x0f,
                None => return VideoInfo::default(),
            }
        }
        let command = frame_type == FRAME_COMMAND
            || packet_type == VPT_SEQUENCE_END
            || packet_type == VPT_METADATA;
        let sequence_header =
            packet_type == VPT_SEQUENCE_START || packet_type == VPT_MPEG2TS_SEQUENCE_START;
        return VideoInfo {
            keyframe: frame_type == FRAME_KEY && !sequence_header && !command,
            sequence_header,
            command,
        };
    }
    let frame_type = b0 >> 4;
    let codec = b0 & 0x0f;
    let has_packet_type = matches!(codec, CODEC_AVC | CODEC_HEVC_LEGACY | CODEC_AV1_LEGACY);
    let packet_type = payload.get(1).copied();
    let sequence_header = has_packet_type && packet_type == Some(0);
    let command = frame_type == FRAME_COMMAND || (has_packet_type && packet_type == Some(2));
    VideoInfo {
        keyframe: frame_type == FRAME_KEY && !sequence_header && !command,
        sequence_header,
        command,
    }
}

/// Legacy sound formats with a sequence header.
const SOUND_AAC: u8 = 10;
/// Enhanced RTMP audio: sound format 9 announces a FourCC and a packet type.
const SOUND_EX_HEADER: u8 = 9;
const APT_SEQUENCE_START: u8 = 0;
const APT_MULTICHANNEL_CONFIG: u8 = 4;
const APT_MULTITRACK: u8 = 5;

/// Whether an audio payload is a decoder configuration (AAC AudioSpecificConfig, Enhanced
/// SequenceStart or multichannel config) that a new player needs before any frame.
pub fn is_audio_sequence_header(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 >> 4 {
        SOUND_AAC => payload.get(1) == Some(&0),
        SOUND_EX_HEADER => {
            let mut packet_type = b0 & 0x0f;
            if packet_type == APT_MULTITRACK {
                match payload.get(1) {
                    Some(&b1) => packet_type = b1 & 0x0f,
                    None => return false,
                }
            }
            packet_type == APT_SEQUENCE_START || packet_type == APT_MULTICHANNEL_CONFIG
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_avc() {
        assert_eq!(
            inspect_video(&[0x17, 0, 0, 0, 0, 1]),
            VideoInfo {
                keyframe: false,
                sequence_header: true,
                command: false
            }
        );
        assert!(inspect_video(&[0x17, 1, 0, 0, 0]).keyframe);
        assert!(!inspect_video(&[0x27, 1, 0, 0, 0]).keyframe);
        assert!(inspect_video(&[0x17, 2, 0, 0, 0]).command);
        assert!(inspect_video(&[0x57, 0]).command);
        // Legacy HEVC (codec id 12) as Chinese CDNs send it.
        assert!(inspect_video(&[0x1c, 0]).sequence_header);
        assert!(inspect_video(&[0x1c, 1]).keyframe);
        // Sorenson H.263 keyframe has no packet type byte.
        assert!(inspect_video(&[0x12, 0xAA]).keyframe);
    }

    #[test]
    fn enhanced_rtmp_video() {
        // 0x80 | keyframe(1)<<4 | SequenceStart, FourCC hvc1.
        let seq = [0x90, b'h', b'v', b'c', b'1', 1, 2, 3];
        assert_eq!(
            inspect_video(&seq),
            VideoInfo {
                keyframe: false,
                sequence_header: true,
                command: false
            }
        );
        // Keyframe CodedFrames (1) and CodedFramesX (3), AV1 and VP9.
        assert!(inspect_video(&[0x91, b'a', b'v', b'0', b'1', 9]).keyframe);
        assert!(inspect_video(&[0x93, b'v', b'p', b'0', b'9', 9]).keyframe);
        // Inter frame (frame type 2).
        assert!(!inspect_video(&[0xA1, b'h', b'v', b'c', b'1', 9]).keyframe);
        // SequenceEnd and Metadata carry no picture.
        assert!(inspect_video(&[0x92, b'h', b'v', b'c', b'1']).command);
        assert!(inspect_video(&[0x94, b'h', b'v', b'c', b'1']).command);
        // Multitrack: real packet type in the next byte's low nibble.
        assert!(inspect_video(&[0x96, 0x00, b'a', b'v', b'0', b'1']).sequence_header);
        assert!(inspect_video(&[0x96, 0x01, b'a', b'v', b'0', b'1']).keyframe);
        assert_eq!(inspect_video(&[0x96]), VideoInfo::default());
        assert_eq!(inspect_video(&[]), VideoInfo::default());
    }

    #[test]
    fn audio_sequence_headers() {
        assert!(is_audio_sequence_header(&[0xAF, 0x00, 0x12, 0x10]));
        assert!(!is_audio_sequence_header(&[0xAF, 0x01, 0x21]));
        // MP3 has no sequence header.
        assert!(!is_audio_sequence_header(&[0x2F, 0x00]));
        // Enhanced audio: 9 << 4 | SequenceStart, FourCC Opus.
        assert!(is_audio_sequence_header(&[0x90, b'O', b'p', b'u', b's']));
        assert!(!is_audio_sequence_header(&[
            0x91, b'O', b'p', b'u', b's', 1
        ]));
        assert!(is_audio_sequence_header(&[0x94, b'm', b'p', b'4', b'a']));
        assert!(is_audio_sequence_header(&[
            0x95, 0x00, b'O', b'p', b'u', b's'
        ]));
        assert!(!is_audio_sequence_header(&[]));
    }
}
