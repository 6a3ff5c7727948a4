//! The raft hard state: term, vote, commit index and membership, replaced atomically.
//!
//! File `hard_state` in the group directory:
//!
//! ```text
//! offset size field
//!      0    8 magic "DTHSTATE"
//!      8    2 format version (1, u16 LE)
//!     10    2 reserved, zero
//!     12    4 membership length n (u32 LE)
//!     16    8 term (u64 LE)
//!     24    8 vote (u64 LE, 0 = no vote)
//!     32    8 commit index (u64 LE)
//!     40    n membership (opaque bytes)
//!   40+n    4 crc32c over bytes 0..40+n
//! ```

use std::path::Path;

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::fs::{FileSystem, OpenMode, read_full_at, write_all_at};

const MAGIC: &[u8; 8] = b"DTHSTATE";
const VERSION: u16 = 1;
const FIXED_BYTES: usize = 40;
/// Largest membership blob accepted (16 MiB).
pub const MAX_MEMBERSHIP_BYTES: usize = 16 << 20;
/// File name of the hard state inside a group directory.
pub const HARD_STATE_FILE: &str = "hard_state";
const HARD_STATE_TMP: &str = "hard_state.tmp";

/// What raft must remember across restarts before it answers a vote or
/// acknowledges entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HardState {
    /// The current term.
    pub term: u64,
    /// The node voted for in `term`; 0 means none.
    pub vote: u64,
    /// The highest index known committed.
    pub commit: u64,
    /// The group membership, opaque to the store.
    pub membership: Bytes,
}

pub(crate) fn encode(hs: &HardState) -> Result<Vec<u8>> {
    if hs.membership.len() > MAX_MEMBERSHIP_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "membership of {} bytes exceeds {MAX_MEMBERSHIP_BYTES}",
            hs.membership.len()
        )));
    }
    let mut b = Vec::with_capacity(FIXED_BYTES + hs.membership.len() + 4);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(hs.membership.len() as u32).to_le_bytes());
    b.extend_from_slice(&hs.term.to_le_bytes());
    b.extend_from_slice(&hs.vote.to_le_bytes());
    b.extend_from_slice(&hs.commit.to_le_bytes());
    b.extend_from_slice(&hs.membership);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    Ok(b)
}

pub(crate) fn decode(b: &[u8]) -> std::result::Result<HardState, String> {
    if b.len() < FIXED_BYTES + 4 {
        return Err(format!("file too short ({} bytes)", b.len()));
    }
    if &b[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    let n = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    if n > MAX_MEMBERSHIP_BYTES || b.len() != FIXED_BYTES + n + 4 {
        return Err(format!(
            "length {} does not match membership length {n}",
            b.len()
        ));
    }
    let end = FIXED_BYTES + n;
    let stored = u32::from_le_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
    if stored != crc32c::crc32c(&b[..end]) {
        return Err("crc mismatch".into());
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != VERSION {
        return Err(format!("unsupported version {version}"));
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    Ok(HardState {
        term: u64_at(16),
        vote: u64_at(24),
        commit: u64_at(32),
        membership: Bytes::copy_from_slice(&b[FIXED_BYTES..end]),
    })
}

/// Writes `hs` to `dir/hard_state` atomically: temp file, fdatasync, rename,
/// directory fsync. After it returns Ok the new state survives power loss; if it
/// fails or the process dies midway, the previous state is intact. Blocking:
/// two to three fsyncs.
pub fn save_hard_state(fs: &dyn FileSystem, dir: &Path, hs: &HardState) -> Result<()> {
    let bytes = encode(hs)?;
    let tmp = dir.join(HARD_STATE_TMP);
    let dst = dir.join(HARD_STATE_FILE);
    let result = (|| {
        let f = fs
            .open(&tmp, OpenMode::Create)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        write_all_at(f.as_ref(), &bytes, 0).map_err(|e| StoreError::io("write", &tmp, e))?;
        f.sync_data()
            .map_err(|e| StoreError::io("fsync", &tmp, e))?;
        drop(f);
        fs.rename(&tmp, &dst)
            .map_err(|e| StoreError::io("rename", &tmp, e))?;
        fs.sync_dir(dir)
            .map_err(|e| StoreError::io("fsync dir", dir, e))
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// Loads `dir/hard_state`, verifying its checksum. `Ok(None)` when the group has
/// never saved one. A damaged file is a [`StoreError::Corrupt`]. Blocking.
pub fn load_hard_state(fs: &dyn FileSystem, dir: &Path) -> Result<Option<HardState>> {
    let path = dir.join(HARD_STATE_FILE);
    let f = match fs.open(&path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("open", &path, e)),
    };
    let len = f.len().map_err(|e| StoreError::io("stat", &path, e))?;
    if len > (FIXED_BYTES + MAX_MEMBERSHIP_BYTES + 4) as u64 {
        // Another format may be larger: name its version rather than call it damage.
        let mut head = [0u8; 10];
        let got =
            read_full_at(f.as_ref(), &mut head, 0).map_err(|e| StoreError::io("read", &path, e))?;
        StoreError::check_version(&head[..got], MAGIC, VERSION, "hard state", &path)?;
        return Err(StoreError::corrupt(
            &path,
            0,
            None,
            format!("hard state file of {len} bytes is too large"),
        ));
    }
    let mut b = vec![0u8; len as usize];
    let got = read_full_at(f.as_ref(), &mut b, 0).map_err(|e| StoreError::io("read", &path, e))?;
    b.truncate(got);
    StoreError::check_version(&b, MAGIC, VERSION, "hard state", &path)?;
    decode(&b)
        .map(Some)
        .map_err(|reason| StoreError::corrupt(&path, 0, None, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFs;

    #[test]
    fn save_load_and_detect_damage() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load_hard_state(&OsFs, d.path()).unwrap(), None);
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 99,
            membership: Bytes::from_static(b"1,2,3"),
        };
        save_hard_state(&OsFs, d.path(), &hs).unwrap();
        assert_eq!(load_hard_state(&OsFs, d.path()).unwrap(), Some(hs.clone()));
        let hs2 = HardState { term: 6, ..hs };
        save_hard_state(&OsFs, d.path(), &hs2).unwrap();
        assert_eq!(load_hard_state(&OsFs, d.path()).unwrap(), Some(hs2));
        assert!(!d.path().join(HARD_STATE_TMP).exists());

        let p = d.path().join(HARD_STATE_FILE);
        let mut b = std::fs::read(&p).unwrap();
        b[20] ^= 0x10;
        std::fs::write(&p, &b).unwrap();
        let e = load_hard_state(&OsFs, d.path()).unwrap_err();
        assert_eq!(e.code(), "STORE_CORRUPT", "{e}");
    }

    #[test]
    fn a_newer_format_version_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let hs = HardState {
            term: 5,
            vote: 2,
            commit: 99,
            membership: Bytes::from_static(b"1,2,3"),
        };
        save_hard_state(&OsFs, d.path(), &hs).unwrap();
        let p = d.path().join(HARD_STATE_FILE);
        let mut b = std::fs::read(&p).unwrap();
        // Version 2 with a valid checksum: only the version is wrong.
        b[8..10].copy_from_slice(&2u16.to_le_bytes());
        let end = b.len() - 4;
        let crc = crc32c::crc32c(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        let e = load_hard_state(&OsFs, d.path()).unwrap_err();
        assert_eq!(e.code(), "STORE_UNSUPPORTED_VERSION", "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("hard state in format version 2"), "{msg}");
        assert!(msg.contains("reads format version 1 only"), "{msg}");
        assert_eq!(std::fs::read(&p).unwrap(), b, "the file was changed");
        // A newer layout larger than this format allows is named by its version too.
        let mut big = b[..10].to_vec();
        big.resize(FIXED_BYTES + MAX_MEMBERSHIP_BYTES + 100, 0xab);
        std::fs::write(&p, &big).unwrap();
        let e = load_hard_state(&OsFs, d.path()).unwrap_err();
        assert_eq!(e.code(), "STORE_UNSUPPORTED_VERSION", "{e}");
    }

    #[test]
    fn failed_save_keeps_previous_state() {
        let fs = crate::fs::FaultyFs::new();
        let d = tempfile::tempdir().unwrap();
        let hs = HardState {
            term: 1,
            ..Default::default()
        };
        save_hard_state(&fs, d.path(), &hs).unwrap();
        fs.failpoints
            .disk_full
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let e = save_hard_state(
            &fs,
            d.path(),
            &HardState {
                term: 2,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "STORE_DISK_FULL");
        fs.failpoints
            .disk_full
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(load_hard_state(&fs, d.path()).unwrap(), Some(hs));
        fs.failpoints
            .syncs_until_failure
            .store(0, std::sync::atomic::Ordering::SeqCst);
        let e = save_hard_state(
            &fs,
            d.path(),
            &HardState {
                term: 3,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "STORE_IO");
        fs.failpoints
            .syncs_until_failure
            .store(-1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(load_hard_state(&fs, d.path()).unwrap().unwrap().term, 1);
    }
}
