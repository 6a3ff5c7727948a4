//! Backup files of one raft group: a node's snapshot file wrapped with what an
//! operator needs to know about it, verified end to end, and restored into
//! the data directory of a node of a new cluster.
//!
//! ```text
//! header
//!      0    8 magic "DTBACKUP"
//!      8    2 backup format version (1, u16 LE)
//!     10    2 reserved, zero
//!     12    4 group id (u32 LE)
//!     16    8 snapshot index: last raft index the image includes (u64 LE)
//!     24    8 snapshot term (u64 LE)
//!     32    8 creation time, ms since the Unix epoch (u64 LE)
//!     40    8 key count: DtKV nodes (values, directories, locks) (u64 LE)
//!     48    8 snapshot length L in bytes (u64 LE)
//!     56    4 membership length n (u32 LE)
//!     60    n membership (the raft membership encoding of the snapshot header)
//!   60+n    4 crc32c over header bytes 0..60+n
//! snapshot
//!      0    L the node's snapshot file as it is on disk (header, crc32c-checked
//!            chunks, trailer: see dongting-store's `snapshot` module)
//! trailer
//!      0    8 "DTBKTAIL"
//!      8    4 crc32c over every byte of the file before this field
//! ```
//!
//! A backup is written to `<file>.tmp`, fsynced, renamed and its directory
//! fsynced, so a file under the final name is always complete.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dongting_kv::{KvLimits, KvStateMachine, Restorer};
use dongting_raft::{Membership, NodeId};
use dongting_store::fs::StoreFile;
use dongting_store::{SNAPSHOT_DIR, SnapshotMeta, SnapshotReader, SnapshotStore};

use crate::config::NodeConfig;
use crate::storage::group_dir;

const MAGIC: &[u8; 8] = b"DTBACKUP";
const TAIL_MAGIC: &[u8; 8] = b"DTBKTAIL";
/// The backup format version this build writes and reads.
pub const BACKUP_FORMAT_VERSION: u16 = 1;
const FIXED_HEADER_BYTES: usize = 60;
const TRAILER_BYTES: u64 = 12;
const MAX_MEMBERSHIP_BYTES: usize = 16 << 20;
const COPY_BYTES: usize = 1 << 20;

/// What a backup file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    /// Group the snapshot belongs to.
    pub group_id: u32,
    /// Last raft index the snapshot includes.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// When the backup was written, ms since the Unix epoch.
    pub created_ms: u64,
    /// DtKV nodes in the snapshot (values, directories, locks; not the root).
    pub key_count: u64,
    /// Length of the embedded snapshot file.
    pub snapshot_bytes: u64,
    /// Membership as of `index`, in the raft encoding.
    pub membership: Bytes,
}

impl BackupHeader {
    fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(FIXED_HEADER_BYTES + self.membership.len() + 4);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&BACKUP_FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.group_id.to_le_bytes());
        h.extend_from_slice(&self.index.to_le_bytes());
        h.extend_from_slice(&self.term.to_le_bytes());
        h.extend_from_slice(&self.created_ms.to_le_bytes());
        h.extend_from_slice(&self.key_count.to_le_bytes());
        h.extend_from_slice(&self.snapshot_bytes.to_le_bytes());
        h.extend_from_slice(&(self.membership.len() as u32).to_le_bytes());
        h.extend_from_slice(&self.membership);
        let crc = crc32c::crc32c(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        h
    }

    /// The membership, decoded.
    pub fn decoded_membership(&self) -> Result<Membership, String> {
        Membership::decode(&self.membership)
            .map_err(|e| format!("backup membership does not decode: {e}"))
    }
}

/// A verified backup file.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    /// Its header.
    pub header: BackupHeader,
    /// Offset of the embedded snapshot in the file.
    pub snapshot_offset: u64,
    /// Size of the whole file.
    pub file_bytes: u64,
    /// Client sessions (exactly-once tables) in the snapshot.
    pub sessions: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A byte range of a file seen as a whole read-only file, so the store's
/// snapshot reader verifies a snapshot embedded in a backup in place.
#[derive(Debug)]
struct Region {
    file: File,
    path: PathBuf,
    base: u64,
    len: u64,
}

impl StoreFile for Region {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        self.file.read_at(&mut buf[..n], self.base + offset)
    }
    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
        Err(std::io::Error::other("a backup is read-only"))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("a backup is read-only"))
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.len)
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

fn open_region(path: &Path, base: u64, len: u64) -> Result<SnapshotReader, String> {
    let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    SnapshotReader::from_file(Arc::new(Region {
        file,
        path: path.to_path_buf(),
        base,
        len,
    }))
    .map_err(|e| format!("embedded snapshot: {e}"))
}

/// Splits the snapshot's data (the state machine's chunks, each framed as
/// `[u32 LE length][chunk]`, across the store's chunk boundaries) back into
/// state machine chunks and restores them.
struct Unframer {
    buf: BytesMut,
    restorer: Restorer,
}

impl Unframer {
    fn new() -> Unframer {
        Unframer {
            buf: BytesMut::new(),
            restorer: Restorer::new(KvLimits {
                max_key_bytes: usize::MAX,
                ..KvLimits::default()
            }),
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= 4 {
            let len = u32_at(&self.buf, 0) as usize;
            if self.buf.len() < 4 + len {
                break;
            }
            let frame = self.buf.split_to(4 + len);
            self.restorer
                .push(&frame[4..])
                .map_err(|e| format!("embedded snapshot: {e}"))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<KvStateMachine, String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "embedded snapshot: {} bytes of a state machine chunk are missing their end",
                self.buf.len()
            ));
        }
        self.restorer
            .finish()
            .map_err(|e| format!("embedded snapshot: {e}"))
    }
}

/// Reads every chunk of `r` (each crc32c-checked by the store's reader) and
/// the state machine stream they carry; returns the restored state machine.
fn read_snapshot(
    r: &mut SnapshotReader,
    mut each: impl FnMut(&Bytes) -> Result<(), String>,
) -> Result<KvStateMachine, String> {
    let mut u = Unframer::new();
    while let Some(chunk) = r
        .next_chunk()
        .map_err(|e| format!("embedded snapshot: {e}"))?
    {
        u.push(&chunk)?;
        each(&chunk)?;
    }
    u.finish()
}

/// Writes a backup of group `group_id` from the complete snapshot file at
/// `snapshot`: verifies the snapshot (every chunk checksum and the state
/// machine stream), then writes `out` through `out.tmp` (fsynced, renamed,
/// directory fsynced). Returns the header written. Blocking.
pub fn write_backup(
    group_id: u32,
    snapshot: &Path,
    out: &Path,
    created_ms: u64,
) -> Result<BackupHeader, String> {
    let src = File::open(snapshot).map_err(|e| format!("open {}: {e}", snapshot.display()))?;
    write_backup_from(group_id, &src, snapshot, out, created_ms)
}

/// [`write_backup`] from the snapshot file already open as `src` (named
/// `snapshot` in messages): the open file stays readable even when snapshot
/// retention removes it from its directory meanwhile. Blocking.
pub fn write_backup_from(
    group_id: u32,
    src: &File,
    snapshot: &Path,
    out: &Path,
    created_ms: u64,
) -> Result<BackupHeader, String> {
    let stat = |e: std::io::Error| format!("stat {}: {e}", snapshot.display());
    let len = src.metadata().map_err(stat)?.len();
    let mut r = SnapshotReader::from_file(Arc::new(Region {
        file: src.try_clone().map_err(stat)?,
        path: snapshot.to_path_buf(),
        base: 0,
        len,
    }))
    .map_err(|e| format!("embedded snapshot: {e}"))?;
    let meta = r.meta().clone();
    let sm = read_snapshot(&mut r, |_| Ok(()))?;
    let header = BackupHeader {
        group_id,
        index: meta.last_index,
        term: meta.last_term,
        created_ms,
        key_count: sm.node_count() as u64,
        snapshot_bytes: len,
        membership: meta.membership,
    };
    drop(sm);
    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        let h = header.encode();
        let mut crc = crc32c::crc32c(&h);
        f.write_all(&h)?;
        let mut buf = vec![0u8; COPY_BYTES];
        let mut copied = 0u64;
        while copied < len {
            let want = (len - copied).min(COPY_BYTES as u64) as usize;
            src.read_exact_at(&mut buf[..want], copied)?;
            crc = crc32c::crc32c_append(crc, &buf[..want]);
            f.write_all(&buf[..want])?;
            copied += want as u64;
        }
        crc = crc32c::crc32c_append(crc, TAIL_MAGIC);
        f.write_all(TAIL_MAGIC)?;
        f.write_all(&crc.to_le_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)?;
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", out.display())
    })?;
    Ok(header)
}

/// `ms` since the Unix epoch as UTC `YYYYMMDDTHHMMSSmmmZ` (sorts as it reads).
pub fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Reads and checks the header; returns it and its length.
fn read_header(f: &File, path: &Path, file_bytes: u64) -> Result<(BackupHeader, u64), String> {
    let bad = |why: String| format!("{}: {why}", path.display());
    let mut fixed = [0u8; FIXED_HEADER_BYTES];
    if file_bytes < FIXED_HEADER_BYTES as u64 {
        return Err(bad(format!(
            "truncated: {file_bytes} bytes, shorter than a backup header"
        )));
    }
    f.read_exact_at(&mut fixed, 0)
        .map_err(|e| bad(format!("read: {e}")))?;
    if &fixed[0..8] != MAGIC {
        return Err(bad("not a backup file (bad magic)".into()));
    }
    let n = u32_at(&fixed, 56) as usize;
    if n > MAX_MEMBERSHIP_BYTES || (FIXED_HEADER_BYTES + n + 4) as u64 > file_bytes {
        return Err(bad(format!(
            "header damaged or truncated (membership length {n})"
        )));
    }
    let mut full = vec![0u8; FIXED_HEADER_BYTES + n + 4];
    f.read_exact_at(&mut full, 0)
        .map_err(|e| bad(format!("read: {e}")))?;
    let end = FIXED_HEADER_BYTES + n;
    if u32_at(&full, end) != crc32c::crc32c(&full[..end]) {
        return Err(bad(
            "header checksum mismatch: the header is corrupted".into()
        ));
    }
    let version = u16::from_le_bytes([full[8], full[9]]);
    if version != BACKUP_FORMAT_VERSION {
        return Err(bad(format!(
            "backup format version {version} is not the supported {BACKUP_FORMAT_VERSION}"
        )));
    }
    Ok((
        BackupHeader {
            group_id: u32_at(&full, 12),
            index: u64_at(&full, 16),
            term: u64_at(&full, 24),
            created_ms: u64_at(&full, 32),
            key_count: u64_at(&full, 40),
            snapshot_bytes: u64_at(&full, 48),
            membership: Bytes::copy_from_slice(&full[FIXED_HEADER_BYTES..end]),
        },
        (end + 4) as u64,
    ))
}

/// Verifies a whole backup file: the header checksum, the length, the
/// checksum over the file, then the embedded snapshot (its header, every
/// chunk checksum, its trailer, the state machine stream it carries) and
/// that the snapshot agrees with the backup header. Any damage or
/// truncation is an error saying what is wrong. Blocking; reads the file
/// twice.
pub fn verify_backup(path: &Path) -> Result<BackupInfo, String> {
    let bad = |why: String| format!("{}: {why}", path.display());
    let f = File::open(path).map_err(|e| bad(format!("open: {e}")))?;
    let file_bytes = f.metadata().map_err(|e| bad(format!("stat: {e}")))?.len();
    let (header, header_len) = read_header(&f, path, file_bytes)?;
    let want = header_len
        .checked_add(header.snapshot_bytes)
        .and_then(|v| v.checked_add(TRAILER_BYTES))
        .ok_or_else(|| bad("header damaged (snapshot length overflows)".into()))?;
    if file_bytes < want {
        return Err(bad(format!(
            "truncated: {file_bytes} bytes, the header announces {want}"
        )));
    }
    if file_bytes > want {
        return Err(bad(format!(
            "{} bytes after the end the header announces ({want})",
            file_bytes - want
        )));
    }
    let mut crc = 0u32;
    let mut buf = vec![0u8; COPY_BYTES];
    let body = file_bytes - 4;
    let mut at = 0u64;
    while at < body {
        let n = (body - at).min(COPY_BYTES as u64) as usize;
        f.read_exact_at(&mut buf[..n], at)
            .map_err(|e| bad(format!("read: {e}")))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n as u64;
    }
    let mut tail = [0u8; TRAILER_BYTES as usize];
    f.read_exact_at(&mut tail, file_bytes - TRAILER_BYTES)
        .map_err(|e| bad(format!("read: {e}")))?;
    let checksum_ok = &tail[0..8] == TAIL_MAGIC && u32_at(&tail, 8) == crc;
    let snapshot = check_snapshot(path, &header, header_len);
    match (checksum_ok, snapshot) {
        (true, Ok(sessions)) => Ok(BackupInfo {
            header,
            snapshot_offset: header_len,
            file_bytes,
            sessions,
        }),
        (true, Err(e)) => Err(bad(e)),
        (false, Ok(_)) => Err(bad(
            "backup checksum mismatch: the file is corrupted (the embedded snapshot's own \
             checks pass, so the damage is in the trailer)"
                .into(),
        )),
        (false, Err(e)) => Err(bad(format!(
            "backup checksum mismatch: the file is corrupted; {e}"
        ))),
    }
}

/// Verifies the embedded snapshot against the header; returns its session count.
fn check_snapshot(path: &Path, h: &BackupHeader, offset: u64) -> Result<u64, String> {
    let mut r = open_region(path, offset, h.snapshot_bytes)?;
    let m = r.meta().clone();
    if m.last_index != h.index || m.last_term != h.term || m.membership != h.membership {
        return Err(format!(
            "embedded snapshot is at index {} term {}, the header says index {} term {}",
            m.last_index, m.last_term, h.index, h.term
        ));
    }
    let sm = read_snapshot(&mut r, |_| Ok(()))?;
    if sm.applied_index() != h.index {
        return Err(format!(
            "embedded state machine is at index {}, the header says {}",
            sm.applied_index(),
            h.index
        ));
    }
    if sm.node_count() as u64 != h.key_count {
        return Err(format!(
            "embedded snapshot holds {} keys, the header says {}",
            sm.node_count(),
            h.key_count
        ));
    }
    Ok(sm.session_count() as u64)
}

/// Prepares the data directory of the node configured by `cfg` to start
/// group `G` (the backup's group) from the backup at `path`: the snapshot is
/// written into `group-G/snapshot/`, and the node, finding a snapshot and no
/// log, starts its log right after the snapshot's index. The membership is
/// the backup's, or `members` (all voters) when given. Refuses, writing
/// nothing, when the file fails verification, the configuration does not
/// host the group, a member is not among its `servers`, or the data
/// directory already holds data of the group. Returns what was done, in
/// words. Blocking.
pub fn restore_backup(
    cfg: &NodeConfig,
    path: &Path,
    members: Option<&[u32]>,
) -> Result<String, String> {
    let info = verify_backup(path)?;
    let h = &info.header;
    let g = h.group_id;
    if !cfg.groups.iter().any(|c| c.id == g) {
        return Err(format!(
            "node {} does not host group {g}: add it to the configuration's groups first",
            cfg.node_id
        ));
    }
    let mut membership = h.decoded_membership()?;
    if let Some(m) = members {
        if m.is_empty() {
            return Err("--members lists no node".into());
        }
        membership.members = m.iter().map(|&i| NodeId::from(i)).collect();
        membership.observers.clear();
        membership.joint = None;
    }
    let ids: Vec<u32> = membership.all_nodes().iter().map(|&i| i as u32).collect();
    for id in &ids {
        if !cfg.servers.iter().any(|s| s.id == *id) {
            return Err(format!(
                "member {id} of group {g} is not in the configuration's servers; \
                 pass --members with the new cluster's node ids"
            ));
        }
    }
    if !ids.contains(&cfg.node_id) {
        return Err(format!(
            "node {} is not in group {g}'s membership {ids:?}; pass --members",
            cfg.node_id
        ));
    }
    let dir = group_dir(&cfg.data_dir, g);
    if let Ok(mut entries) = std::fs::read_dir(&dir)
        && entries.next().is_some()
    {
        return Err(format!(
            "{} already holds data of group {g}; restore only into an empty data directory",
            dir.display()
        ));
    }
    let existed = dir.exists();
    let write = || -> Result<(), String> {
        let store = SnapshotStore::open(&dir.join(SNAPSHOT_DIR), 1).map_err(|e| e.to_string())?;
        let mut w = store
            .begin(SnapshotMeta {
                last_index: h.index,
                last_term: h.term,
                membership: membership.encode(),
            })
            .map_err(|e| e.to_string())?;
        let mut r = open_region(path, info.snapshot_offset, h.snapshot_bytes)?;
        read_snapshot(&mut r, |chunk| w.write(chunk).map_err(|e| e.to_string()))?;
        w.finish().map_err(|e| e.to_string())?;
        Ok(())
    };
    if let Err(e) = write() {
        if existed {
            let _ = std::fs::remove_dir_all(dir.join(SNAPSHOT_DIR));
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(format!("restoring into {}: {e}", dir.display()));
    }
    Ok(format!(
        "group {g} restored into {} at index {} term {} ({} keys), members {:?}{}",
        dir.display(),
        h.index,
        h.term,
        h.key_count,
        membership.members,
        if membership.observers.is_empty() {
            String::new()
        } else {
            format!(" observers {:?}", membership.observers)
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_sort_and_match_the_calendar() {
        assert_eq!(utc_stamp(0), "19700101T000000000Z");
        // 2024-02-29 12:34:56.789 UTC
        assert_eq!(utc_stamp(1_709_210_096_789), "20240229T123456789Z");
        assert_eq!(utc_stamp(951_868_800_000), "20000301T000000000Z");
    }
}
