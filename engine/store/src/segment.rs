//! Segment files: their header, their names and the recovery scan.
//!
//! A segment is `<first_index as 20 digits>.log` in the log directory:
//!
//! ```text
//! offset size field
//!      0    8 magic "DTLOGSEG"
//!      8    2 format version (1, u16 LE)
//!     10    2 header length (32, u16 LE)
//!     12    4 torn-tail window in bytes (u32 LE): at most this many bytes at the
//!             end of the file were ever written but not yet fsynced
//!     16    8 index of the first record (u64 LE)
//!     24    4 reserved, zero
//!     28    4 crc32c over bytes 0..28
//!     32      records (see `record`), back to back
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::fs::{FileSystem, OpenMode, StoreFile, read_full_at};
use crate::record::{RECORD_HEADER_BYTES, RecordError, check_record};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DTLOGSEG";
pub(crate) const SEGMENT_VERSION: u16 = 1;
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
const SEGMENT_SUFFIX: &str = ".log";

pub(crate) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_segment_header(
    first_index: u64,
    window_bytes: u32,
) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
    h[12..16].copy_from_slice(&window_bytes.to_le_bytes());
    h[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) first_index: u64,
    pub(crate) window_bytes: u32,
}

pub(crate) fn decode_segment_header(b: &[u8]) -> std::result::Result<SegmentHeader, String> {
    if b.len() < SEGMENT_HEADER_BYTES {
        return Err(format!("segment header incomplete ({} bytes)", b.len()));
    }
    if &b[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".into());
    }
    let crc = u32::from_le_bytes([b[28], b[29], b[30], b[31]]);
    if crc != crc32c::crc32c(&b[0..28]) {
        return Err("segment header crc mismatch".into());
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != SEGMENT_VERSION {
        return Err(format!("unsupported segment format version {version}"));
    }
    let hlen = u16::from_le_bytes([b[10], b[11]]) as usize;
    if hlen != SEGMENT_HEADER_BYTES {
        return Err(format!("unsupported segment header length {hlen}"));
    }
    let mut idx = [0u8; 8];
    idx.copy_from_slice(&b[16..24]);
    Ok(SegmentHeader {
        window_bytes: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        first_index: u64::from_le_bytes(idx),
    })
}

/// One segment as recovery found it.
#[derive(Debug)]
pub(crate) struct RecoveredSegment {
    pub(crate) first_index: u64,
    pub(crate) window_bytes: u32,
    /// Start offset of each record; record `first_index + i` starts at `offsets[i]`.
    pub(crate) offsets: Vec<u32>,
    /// End of the last valid record (the append position).
    pub(crate) end: u64,
    pub(crate) file: Arc<dyn StoreFile>,
}

/// What recovery found in a log directory.
#[derive(Debug, Default)]
pub(crate) struct RecoveredLog {
    pub(crate) segments: Vec<RecoveredSegment>,
    /// (first index of a run of equal terms, term)
    pub(crate) term_runs: Vec<(u64, u64)>,
    /// Bytes cut from a torn tail, if any.
    pub(crate) torn_bytes: u64,
}

/// Scans every segment in `dir`, verifying headers, checksums, index continuity
/// and term order. Repairs only a torn tail of the newest segment (see
/// docs/storage.md, "Recovery rules"); any other damage is an error naming the
/// file, offset and index. Blocking; reads every segment once.
pub(crate) fn recover_log(fs: &dyn FileSystem, dir: &Path) -> Result<RecoveredLog> {
    let mut names: Vec<(u64, String)> = fs
        .list_files(dir)
        .map_err(|e| StoreError::io("list", dir, e))?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|i| (i, n)))
        .collect();
    names.sort();
    let mut out = RecoveredLog::default();
    let mut expect_next: Option<u64> = None;
    let mut last_term = 0u64;
    let count = names.len();
    let mut buf: Vec<u8> = Vec::new();
    for (pos, (name_index, name)) in names.into_iter().enumerate() {
        let is_last = pos + 1 == count;
        let path = dir.join(&name);
        let file = fs
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let len = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
        buf.clear();
        buf.resize(len as usize, 0);
        let got = read_full_at(file.as_ref(), &mut buf, 0)
            .map_err(|e| StoreError::io("read", &path, e))?;
        buf.truncate(got);
        StoreError::check_version(&buf, SEGMENT_MAGIC, SEGMENT_VERSION, "log segment", &path)?;
        let header = match decode_segment_header(&buf) {
            Ok(h) => h,
            Err(reason) => {
                if is_last && (buf.len() <= SEGMENT_HEADER_BYTES) {
                    // Creation of the newest segment was interrupted: its header is
                    // synced before any record, so nothing in it was ever durable.
                    tracing::warn!(file = %path.display(), %reason, "removing newest segment with an incomplete header");
                    fs.remove_file(&path)
                        .map_err(|e| StoreError::io("remove", &path, e))?;
                    fs.sync_dir(dir)
                        .map_err(|e| StoreError::io("fsync dir", dir, e))?;
                    continue;
                }
                // The index is the one the file name says the segment starts at.
                return Err(StoreError::corrupt(&path, 0, Some(name_index), reason));
            }
        };
        if header.first_index != name_index {
            return Err(StoreError::corrupt(
                &path,
                16,
                Some(header.first_index),
                format!(
                    "header first index {} does not match the file name",
                    header.first_index
                ),
            ));
        }
        if let Some(n) = expect_next
            && n != header.first_index
        {
            return Err(StoreError::corrupt(
                &path,
                16,
                Some(header.first_index),
                format!(
                    "segment starts at index {} but the previous segment ends at {}",
                    header.first_index,
                    n - 1
                ),
            ));
        }
        let mut offsets = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES;
        let mut index = header.first_index;
        let bad: Option<(usize, String)> = loop {
            if at == buf.len() {
                break None;
            }
            match check_record(&buf[at..]) {
                Ok(h) => {
                    if h.index != index {
                        break Some((
                            at,
                            format!("record index {} where {} was expected", h.index, index),
                        ));
                    }
                    if h.term < last_term {
                        break Some((at, format!("term {} after term {}", h.term, last_term)));
                    }
                    if h.term != last_term || out.term_runs.is_empty() {
                        out.term_runs.push((index, h.term));
                        last_term = h.term;
                    }
                    offsets.push(at as u32);
                    at += RECORD_HEADER_BYTES + h.payload_len;
                    index += 1;
                }
                Err(e) => {
                    let reason = match e {
                        RecordError::Incomplete { .. } => {
                            format!("{e} (file ends inside the record)")
                        }
                        _ => e.to_string(),
                    };
                    break Some((at, reason));
                }
            }
        };
        if let Some((bad_at, reason)) = bad {
            let window = u64::from(header.window_bytes);
            if !is_last || (bad_at as u64) < (buf.len() as u64).saturating_sub(window) {
                return Err(StoreError::corrupt(
                    &path,
                    bad_at as u64,
                    Some(index),
                    reason,
                ));
            }
            let torn = buf.len() as u64 - bad_at as u64;
            tracing::warn!(file = %path.display(), offset = bad_at, index, torn_bytes = torn, %reason, "truncating torn tail of the newest segment");
            file.set_len(bad_at as u64)
                .map_err(|e| StoreError::io("truncate", &path, e))?;
            out.torn_bytes = torn;
            at = bad_at;
        }
        // Data may sit only in the page cache after a process crash; make it durable
        // before anything is reported as synced. Older segments were synced when the
        // next one was created.
        if is_last {
            file.sync_data()
                .map_err(|e| StoreError::io("fsync", &path, e))?;
        }
        expect_next = Some(index);
        out.segments.push(RecoveredSegment {
            first_index: header.first_index,
            window_bytes: header.window_bytes,
            offsets,
            end: at as u64,
            file,
        });
    }
    Ok(out)
}

/// Reads and verifies records `first..first+count` stored in `file` between
/// byte offsets `start` and `end`. Blocking.
pub(crate) fn read_span(
    file: &dyn StoreFile,
    path: &Path,
    start: u64,
    end: u64,
    first: u64,
    count: usize,
    out: &mut Vec<crate::record::LogRecord>,
) -> Result<()> {
    let mut buf = vec![0u8; (end - start) as usize];
    let got = read_full_at(file, &mut buf, start).map_err(|e| StoreError::io("read", path, e))?;
    if got != buf.len() {
        return Err(StoreError::corrupt(
            path,
            start + got as u64,
            Some(first),
            "segment shorter than its index says",
        ));
    }
    let buf = Bytes::from(buf);
    let mut at = 0usize;
    for i in 0..count as u64 {
        let (r, n) = crate::record::decode_record_shared(&buf, at).map_err(|e| {
            StoreError::corrupt(path, start + at as u64, Some(first + i), e.to_string())
        })?;
        if r.index != first + i {
            return Err(StoreError::corrupt(
                path,
                start + at as u64,
                Some(first + i),
                format!("record index {} where {} was expected", r.index, first + i),
            ));
        }
        out.push(r);
        at += n;
    }
    Ok(())
}

pub(crate) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(segment_name(first_index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFs;

    /// A segment header in format version `version`, with a valid checksum.
    fn header_of_version(first_index: u64, version: u16) -> Vec<u8> {
        let mut h = encode_segment_header(first_index, 0).to_vec();
        h[8..10].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    #[test]
    fn a_newer_segment_format_is_refused_by_name_and_left_in_place() {
        let d = tempfile::tempdir().unwrap();
        // Only a header: recovery would take it for an interrupted creation
        // and remove it, were the version not checked first.
        let alone = segment_path(d.path(), 1);
        std::fs::write(&alone, header_of_version(1, 2)).unwrap();
        let e = recover_log(&OsFs, d.path()).unwrap_err();
        assert_eq!(e.code(), "STORE_UNSUPPORTED_VERSION", "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&alone.display().to_string()), "{msg}");
        assert!(msg.contains("log segment in format version 2"), "{msg}");
        assert!(msg.contains("reads format version 1 only"), "{msg}");
        assert!(alone.exists(), "the segment was removed");
        // With bytes of an unknown layout after the header: refused the same way.
        let mut long = header_of_version(1, 7);
        long.extend_from_slice(&[0x5a; 300]);
        std::fs::write(&alone, &long).unwrap();
        let e = recover_log(&OsFs, d.path()).unwrap_err();
        assert!(e.to_string().contains("format version 7"), "{e}");
        assert_eq!(std::fs::read(&alone).unwrap(), long);
        // The current version passes the check.
        std::fs::write(&alone, header_of_version(1, SEGMENT_VERSION)).unwrap();
        assert!(recover_log(&OsFs, d.path()).is_ok());
    }
}
