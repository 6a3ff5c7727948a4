//! The log record: its in-memory form and its byte encoding.
//!
//! ```text
//! offset size field
//!      0    4 crc32c (Castagnoli) over bytes 4..28 of this header, then the payload
//!      4    4 payload length in bytes (u32, little endian)
//!      8    8 index (u64 LE)
//!     16    8 term (u64 LE)
//!     24    1 kind (opaque to the store)
//!     25    3 reserved, zero
//!     28    n payload
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes in a record header.
pub const RECORD_HEADER_BYTES: usize = 28;

/// The largest payload a record may carry (256 MiB). A length field above it is
/// treated as damage rather than as an allocation request.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 20;

/// One raft log entry as the store sees it: position, term, an opaque kind tag
/// and an opaque payload. Cloning is cheap (the payload is reference counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The entry's log index (1-based, consecutive).
    pub index: u64,
    /// The term of the leader that created the entry.
    pub term: u64,
    /// The entry kind, chosen by the raft layer (normal, config change, ...).
    pub kind: u8,
    /// The entry's payload.
    pub payload: Bytes,
}

impl LogRecord {
    /// Bytes this record occupies on disk (header plus payload).
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Why a buffer did not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The buffer ends before the record does; `needed` bytes make it complete.
    #[error("record incomplete: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Bytes the whole record needs (header plus payload).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The length field is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload length {0} exceeds the maximum")]
    BadLength(u64),
    /// The reserved bytes are not zero.
    #[error("reserved header bytes are not zero")]
    BadReserved,
    /// The checksum does not match the header and payload.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// The checksum stored in the record.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
}

/// Appends the encoding of `r` to `buf`. Costs one CRC32C pass over the payload
/// and one copy of it.
pub(crate) fn encode_record(r: &LogRecord, buf: &mut BytesMut) {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[4..8].copy_from_slice(&(r.payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&r.index.to_le_bytes());
    header[16..24].copy_from_slice(&r.term.to_le_bytes());
    header[24] = r.kind;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[4..]), &r.payload);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    buf.reserve(RECORD_HEADER_BYTES + r.payload.len());
    buf.put_slice(&header);
    buf.put_slice(&r.payload);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Header fields of a record that passed every check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordHeader {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) kind: u8,
    pub(crate) payload_len: usize,
}

/// Verifies the record at the start of `buf` and returns its header.
pub(crate) fn check_record(buf: &[u8]) -> Result<RecordHeader, RecordError> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(RecordError::Incomplete {
            needed: RECORD_HEADER_BYTES,
            available: buf.len(),
        });
    }
    let len = u32_at(buf, 4) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Err(RecordError::BadLength(len as u64));
    }
    let total = RECORD_HEADER_BYTES + len;
    if buf.len() < total {
        return Err(RecordError::Incomplete {
            needed: total,
            available: buf.len(),
        });
    }
    let stored = u32_at(buf, 0);
    let computed = crc32c::crc32c(&buf[4..total]);
    if stored != computed {
        return Err(RecordError::BadCrc { stored, computed });
    }
    if buf[25..28] != [0, 0, 0] {
        return Err(RecordError::BadReserved);
    }
    Ok(RecordHeader {
        index: u64_at(buf, 8),
        term: u64_at(buf, 16),
        kind: buf[24],
        payload_len: len,
    })
}

/// Decodes the record at the start of `buf`, verifying its checksum, and returns
/// it with the number of bytes it occupied. Copies the payload. Never panics on
/// any input; this is the entry point for fuzzing the record format.
pub fn decode_record(buf: &[u8]) -> Result<(LogRecord, usize), RecordError> {
    let h = check_record(buf)?;
    let end = RECORD_HEADER_BYTES + h.payload_len;
    Ok((
        LogRecord {
            index: h.index,
            term: h.term,
            kind: h.kind,
            payload: Bytes::copy_from_slice(&buf[RECORD_HEADER_BYTES..end]),
        },
        end,
    ))
}

/// Like [`decode_record`] for the record at `at` in `buf`, sharing the payload
/// with `buf` instead of copying it.
pub(crate) fn decode_record_shared(
    buf: &Bytes,
    at: usize,
) -> Result<(LogRecord, usize), RecordError> {
    let h = check_record(&buf[at..])?;
    let start = at + RECORD_HEADER_BYTES;
    let end = start + h.payload_len;
    Ok((
        LogRecord {
            index: h.index,
            term: h.term,
            kind: h.kind,
            payload: buf.slice(start..end),
        },
        end - at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> LogRecord {
        LogRecord {
            index: i,
            term: 7,
            kind: 3,
            payload: Bytes::from(vec![i as u8; 10]),
        }
    }

    #[test]
    fn round_trip() {
        let mut b = BytesMut::new();
        encode_record(&rec(5), &mut b);
        encode_record(&rec(6), &mut b);
        let (r, n) = decode_record(&b).unwrap();
        assert_eq!(r, rec(5));
        assert_eq!(n, 38);
        let frozen = b.freeze();
        let (r2, _) = decode_record_shared(&frozen, n).unwrap();
        assert_eq!(r2, rec(6));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut b = BytesMut::new();
        encode_record(&rec(9), &mut b);
        for bit in 0..b.len() * 8 {
            let mut c = b.to_vec();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&c).is_err(), "flip of bit {bit} not detected");
        }
    }

    #[test]
    fn truncated_input_is_incomplete() {
        let mut b = BytesMut::new();
        encode_record(&rec(1), &mut b);
        for cut in 0..b.len() {
            assert!(matches!(
                decode_record(&b[..cut]),
                Err(RecordError::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn huge_length_is_rejected_without_allocating() {
        let mut b = vec![0u8; RECORD_HEADER_BYTES];
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_record(&b), Err(RecordError::BadLength(_))));
    }
}
