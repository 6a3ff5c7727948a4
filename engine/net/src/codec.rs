//! The frame codec: a fixed 24-byte header around an opaque body.
//!
//! Layout (all integers little-endian, offsets in bytes; see `docs/protocol.md`):
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 4    | frame length, header included                      |
//! | 4      | 2    | magic `"DT"` (0x44 0x54)                           |
//! | 6      | 1    | protocol version (1)                               |
//! | 7      | 1    | frame type: 1 REQ, 2 RESP, 3 ONE_WAY, 4 PUSH       |
//! | 8      | 2    | command                                            |
//! | 10     | 2    | flags: bit 0 CLOSING, others reserved (0)          |
//! | 12     | 4    | request id                                         |
//! | 16     | 4    | status                                             |
//! | 20     | 4    | remaining timeout in milliseconds (0 = none)       |
//! | 24     | n    | body                                               |
//!
//! The decoder never allocates: it validates the whole header as soon as it has
//! arrived and leaves the growth of the read buffer to the reader, which adds
//! room as bytes arrive, so a hostile length costs nothing. Decoded bodies are
//! `Bytes` slices of the read buffer: no copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::status::Status;

/// Size of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 24;
/// The two magic bytes at offset 4 of every frame.
pub const MAGIC: [u8; 2] = *b"DT";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Flag bit on a server's last frame before it closes the connection (an
/// error that ends the connection). A client that sees it stops sending on the
/// connection at once, so its next call opens a new one instead of racing the
/// close.
pub const FLAG_CLOSING: u16 = 0x0001;
/// Default maximum frame size, header included (5 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 5 * 1024 * 1024;
/// Default maximum body size (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u32 = 4 * 1024 * 1024;
/// Largest frame a server accepts on a connection whose handshake is not done
/// yet (4 KiB). A handshake request frame is 72 bytes plus the client id
/// (and at most 3 bytes of padding), so client ids up to 4,000 bytes fit; a
/// longer announced length closes the connection before its bytes are read.
pub const MAX_HANDSHAKE_FRAME_BYTES: u32 = 4096;

/// The kind of a frame (header byte 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A request that expects exactly one response with the same request id.
    Request = 1,
    /// The response to a request.
    Response = 2,
    /// A request that gets no response.
    OneWay = 3,
    /// A message the server sends to a client without a request.
    Push = 4,
}

impl FrameType {
    /// Parses the wire byte; `None` for an unknown type.
    pub fn from_u8(value: u8) -> Option<FrameType> {
        match value {
            1 => Some(FrameType::Request),
            2 => Some(FrameType::Response),
            3 => Some(FrameType::OneWay),
            4 => Some(FrameType::Push),
            _ => None,
        }
    }
}

/// The decoded fixed header of a frame, without the length, magic and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What kind of frame this is.
    pub frame_type: FrameType,
    /// The command number; responses carry the command of their request.
    pub command: u16,
    /// Reserved flag bits; senders write 0 and receivers ignore unknown bits.
    pub flags: u16,
    /// Request id chosen by the client; 0 in PUSH frames and in connection-level
    /// error responses.
    pub request_id: u32,
    /// Status of a response; 0 (SUCCESS) in every other frame type.
    pub status: Status,
    /// Remaining time the sender grants the request, in milliseconds; 0 means
    /// no deadline.
    pub timeout_ms: u32,
}

impl FrameHeader {
    /// A header for a frame of `frame_type` with everything else zero.
    pub fn new(frame_type: FrameType, command: u16, request_id: u32) -> FrameHeader {
        FrameHeader {
            frame_type,
            command,
            flags: 0,
            request_id,
            status: Status::SUCCESS,
            timeout_ms: 0,
        }
    }
}

/// A complete decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The fixed header.
    pub header: FrameHeader,
    /// The body: a zero-copy slice of the receive buffer.
    pub body: Bytes,
}

/// Why a byte stream is not a valid sequence of frames. Every variant means
/// the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes 4..6 are not the magic `"DT"`.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The two bytes found instead.
        found: [u8; 2],
    },
    /// The version byte names a protocol this build does not speak.
    #[error("unsupported protocol version {found} (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The frame type byte is not 1–4.
    #[error("unknown frame type {found}")]
    UnknownFrameType {
        /// The type byte found.
        found: u8,
    },
    /// The length field is smaller than the header itself.
    #[error("frame length {length} is shorter than the {HEADER_LEN}-byte header")]
    FrameTooShort {
        /// The length field.
        length: u32,
    },
    /// The length field exceeds the configured maximum frame size.
    #[error("frame length {length} exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The length field (or the length an encoder was asked to produce).
        length: u64,
        /// The limit in force.
        max: u32,
        /// The request id when the header was otherwise valid and the frame a
        /// request, so the receiver can answer it before closing.
        request_id: Option<u32>,
    },
}

impl FrameError {
    /// The request id an error response can be addressed to, when known.
    pub fn request_id(&self) -> Option<u32> {
        match self {
            FrameError::FrameTooLarge { request_id, .. } => *request_id,
            _ => None,
        }
    }
}

/// Incremental frame decoder over a `BytesMut` receive buffer.
///
/// Cost: O(1) per frame plus the split of the buffer (no body copy). The
/// decoder itself never allocates: an incomplete frame waits for its bytes
/// without room being reserved for it, so memory follows the bytes that
/// actually arrived, never the length a header announces (see
/// [`announced_len`] for readers that budget for a frame).
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: u32,
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame_bytes` (header
    /// included). Values below the header size are raised to it.
    pub fn new(max_frame_bytes: u32) -> FrameDecoder {
        FrameDecoder {
            max_frame_bytes: max_frame_bytes.max(HEADER_LEN as u32),
        }
    }

    /// The maximum frame size this decoder accepts.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Takes the next complete frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed (nothing is reserved for
    /// them), and an error as soon as the header is known to be invalid,
    /// before the body has arrived.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let length = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let magic = [buf[4], buf[5]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = buf[6];
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion { found: version });
        }
        let Some(frame_type) = FrameType::from_u8(buf[7]) else {
            return Err(FrameError::UnknownFrameType { found: buf[7] });
        };
        if (length as usize) < HEADER_LEN {
            return Err(FrameError::FrameTooShort { length });
        }
        if length > self.max_frame_bytes {
            let request_id = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
            return Err(FrameError::FrameTooLarge {
                length: u64::from(length),
                max: self.max_frame_bytes,
                request_id: (frame_type == FrameType::Request).then_some(request_id),
            });
        }
        let length = length as usize;
        if buf.len() < length {
            return Ok(None);
        }
        let mut frame = buf.split_to(length).freeze();
        frame.advance(8);
        let command = frame.get_u16_le();
        let flags = frame.get_u16_le();
        let request_id = frame.get_u32_le();
        let status = Status(frame.get_u32_le());
        let timeout_ms = frame.get_u32_le();
        Ok(Some(Frame {
            header: FrameHeader {
                frame_type,
                command,
                flags,
                request_id,
                status,
                timeout_ms,
            },
            body: frame,
        }))
    }
}

/// The length field of the frame at the front of `buf` once its whole header
/// has arrived, `None` before. Meaningful after [`FrameDecoder::decode`]
/// returned `Ok(None)`: the header has then passed every check.
pub fn announced_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize)
}

/// Appends one frame (header and body) to `dst`.
///
/// Cost: one copy of `body` into `dst`. Fails only when the frame would not fit
/// the 32-bit length field; callers enforce the configured limits before.
pub fn encode_frame(
    header: &FrameHeader,
    body: &[u8],
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let length = HEADER_LEN as u64 + body.len() as u64;
    let Ok(length32) = u32::try_from(length) else {
        return Err(FrameError::FrameTooLarge {
            length,
            max: u32::MAX,
            request_id: None,
        });
    };
    dst.reserve(length32 as usize);
    dst.put_u32_le(length32);
    dst.put_slice(&MAGIC);
    dst.put_u8(PROTOCOL_VERSION);
    dst.put_u8(header.frame_type as u8);
    dst.put_u16_le(header.command);
    dst.put_u16_le(header.flags);
    dst.put_u32_le(header.request_id);
    dst.put_u32_le(header.status.0);
    dst.put_u32_le(header.timeout_ms);
    dst.put_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(frame_type: FrameType) -> FrameHeader {
        FrameHeader {
            frame_type,
            command: 0x1234,
            flags: 0x8001,
            request_id: 0xdead_beef,
            status: Status(7),
            timeout_ms: 1500,
        }
    }

    #[test]
    fn layout_is_byte_exact() {
        let mut buf = BytesMut::new();
        encode_frame(&header(FrameType::Request), b"xy", &mut buf).unwrap();
        let expected: Vec<u8> = vec![
            26, 0, 0, 0, b'D', b'T', 1, 1, 0x34, 0x12, 0x01, 0x80, 0xef, 0xbe, 0xad, 0xde, 7, 0, 0,
            0, 0xdc, 0x05, 0, 0, b'x', b'y',
        ];
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn decodes_many_frames_from_one_buffer_without_copy() {
        let mut buf = BytesMut::new();
        for i in 0..10u32 {
            let mut h = header(FrameType::Response);
            h.request_id = i;
            encode_frame(&h, &i.to_le_bytes(), &mut buf).unwrap();
        }
        let base = buf.as_ptr() as usize;
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        for i in 0..10u32 {
            let frame = decoder.decode(&mut buf).unwrap().unwrap();
            assert_eq!(frame.header.request_id, i);
            assert_eq!(&frame.body[..], &i.to_le_bytes());
            let offset = frame.body.as_ptr() as usize - base;
            assert_eq!(offset, (i as usize) * (HEADER_LEN + 4) + HEADER_LEN);
        }
        assert!(decoder.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut full = BytesMut::new();
        encode_frame(&header(FrameType::OneWay), &[9; 100], &mut full).unwrap();
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut buf = BytesMut::new();
        for (i, byte) in full.iter().enumerate() {
            buf.put_u8(*byte);
            let result = decoder.decode(&mut buf).unwrap();
            if i + 1 < full.len() {
                assert!(result.is_none(), "frame complete after {} bytes", i + 1);
            } else {
                assert_eq!(result.unwrap().body.len(), 100);
            }
        }
    }

    #[test]
    fn an_announced_length_reserves_nothing() {
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut full = BytesMut::new();
        encode_frame(&header(FrameType::Request), &[7; 1 << 20], &mut full).unwrap();
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(&full[..200]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.capacity(), 256, "no room reserved for the rest");
        assert_eq!(announced_len(&buf), Some(HEADER_LEN + (1 << 20)));
        assert_eq!(announced_len(&buf[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn rejects_bad_headers() {
        let decoder = FrameDecoder::new(1024);
        let mut good = BytesMut::new();
        encode_frame(&header(FrameType::Request), &[], &mut good).unwrap();

        let mut bad = good.clone();
        bad[4] = b'X';
        assert_eq!(
            decoder.decode(&mut bad),
            Err(FrameError::BadMagic {
                found: [b'X', b'T']
            })
        );

        let mut bad = good.clone();
        bad[6] = 2;
        assert_eq!(
            decoder.decode(&mut bad),
            Err(FrameError::UnsupportedVersion { found: 2 })
        );

        let mut bad = good.clone();
        bad[7] = 0;
        assert_eq!(
            decoder.decode(&mut bad),
            Err(FrameError::UnknownFrameType { found: 0 })
        );

        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&23u32.to_le_bytes());
        assert_eq!(
            decoder.decode(&mut bad),
            Err(FrameError::FrameTooShort { length: 23 })
        );

        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let capacity_before = bad.capacity();
        assert_eq!(
            decoder.decode(&mut bad),
            Err(FrameError::FrameTooLarge {
                length: u64::from(u32::MAX),
                max: 1024,
                request_id: Some(0xdead_beef)
            })
        );
        assert_eq!(
            bad.capacity(),
            capacity_before,
            "no allocation for a hostile length"
        );
    }

    fn arb_frame_type() -> impl Strategy<Value = FrameType> {
        prop_oneof![
            Just(FrameType::Request),
            Just(FrameType::Response),
            Just(FrameType::OneWay),
            Just(FrameType::Push),
        ]
    }

    fn arb_header() -> impl Strategy<Value = FrameHeader> {
        (
            arb_frame_type(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(frame_type, command, flags, request_id, status, timeout_ms)| FrameHeader {
                    frame_type,
                    command,
                    flags,
                    request_id,
                    status: Status(status),
                    timeout_ms,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(
            (arb_header(), proptest::collection::vec(any::<u8>(), 0..300)), 1..8),
            split in any::<prop::sample::Index>())
        {
            let mut wire = BytesMut::new();
            for (h, body) in &frames {
                encode_frame(h, body, &mut wire).unwrap();
            }
            // Deliver the stream in two pieces at an arbitrary point.
            let cut = split.index(wire.len() + 1);
            let second = wire.split_off(cut);
            let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            for piece in [wire, second] {
                buf.extend_from_slice(&piece);
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    decoded.push(frame);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(decoded.len(), frames.len());
            for (frame, (h, body)) in decoded.iter().zip(&frames) {
                prop_assert_eq!(&frame.header, h);
                prop_assert_eq!(&frame.body[..], &body[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let decoder = FrameDecoder::new(256);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                prop_assert!(frame.body.len() + HEADER_LEN <= 256);
            }
            prop_assert!(buf.capacity() <= 512 + 256);
        }
    }
}
