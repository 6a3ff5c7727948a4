//! Snapshot files: a streaming writer, a verifying reader, a raw reader for
//! sending to followers, an installer for receiving from a leader, retention.
//!
//! File `<last_index as 20 digits>-<last_term as 20 digits>.snap` in the
//! snapshot directory:
//!
//! ```text
//! header
//!      0    8 magic "DTSNAPSH"
//!      8    2 format version (1, u16 LE)
//!     10    2 reserved, zero
//!     12    4 membership length n (u32 LE)
//!     16    8 last included index (u64 LE)
//!     24    8 last included term (u64 LE)
//!     32    n membership (opaque)
//!   32+n    4 crc32c over header bytes 0..32+n
//! data chunks, repeated
//!      0    4 data length m (u32 LE, 1..=16 MiB)
//!      4    4 crc32c of the data
//!      8    m data
//! trailer
//!      0    4 zero (end marker)
//!      4    4 crc32c over trailer bytes 8..24
//!      8    8 total data bytes (u64 LE)
//!     16    8 number of data chunks (u64 LE)
//! ```
//!
//! A snapshot is written as `<name>.tmp`, fsynced, renamed, and the directory
//! fsynced; files ending in `.tmp` are incomplete and removed at open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::error::{Result, StoreError};
use crate::fs::{FileSystem, OpenMode, OsFs, StoreFile, read_full_at, write_all_at};

const MAGIC: &[u8; 8] = b"DTSNAPSH";
const VERSION: u16 = 1;
const FIXED_HEADER_BYTES: usize = 32;
const CHUNK_HEADER_BYTES: usize = 8;
const TRAILER_BYTES: usize = 24;
/// Largest data chunk in a snapshot file (16 MiB).
pub const MAX_CHUNK_BYTES: usize = 16 << 20;
/// Data is buffered into chunks of this size by [`SnapshotWriter`] (256 KiB).
pub const WRITER_CHUNK_BYTES: usize = 256 << 10;
const MAX_MEMBERSHIP_BYTES: usize = 16 << 20;
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
const INSTALL_TMP: &str = "install.snap.tmp";

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Index of the last log entry the snapshot includes.
    pub last_index: u64,
    /// Term of that entry.
    pub last_term: u64,
    /// Membership as of `last_index`, opaque to the store.
    pub membership: Bytes,
}

/// A complete snapshot file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its metadata (header verified by CRC).
    pub meta: SnapshotMeta,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes (what a follower receives).
    pub file_bytes: u64,
}

fn file_name(meta: &SnapshotMeta) -> String {
    format!("{:020}-{:020}{SUFFIX}", meta.last_index, meta.last_term)
}

fn encode_header(meta: &SnapshotMeta) -> Result<Vec<u8>> {
    if meta.membership.len() > MAX_MEMBERSHIP_BYTES {
        return Err(StoreError::InvalidArgument(format!(
            "membership of {} bytes exceeds {MAX_MEMBERSHIP_BYTES}",
            meta.membership.len()
        )));
    }
    let mut h = Vec::with_capacity(FIXED_HEADER_BYTES + meta.membership.len() + 4);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&(meta.membership.len() as u32).to_le_bytes());
    h.extend_from_slice(&meta.last_index.to_le_bytes());
    h.extend_from_slice(&meta.last_term.to_le_bytes());
    h.extend_from_slice(&meta.membership);
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    Ok(h)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads and verifies the header; returns the metadata and the header length.
fn read_header(f: &dyn StoreFile, path: &Path) -> Result<(SnapshotMeta, u64)> {
    let mut fixed = [0u8; FIXED_HEADER_BYTES];
    let got = read_full_at(f, &mut fixed, 0).map_err(|e| StoreError::io("read", path, e))?;
    let corrupt = |r: String| StoreError::corrupt(path, 0, None, r);
    if got < FIXED_HEADER_BYTES {
        return Err(corrupt(format!("snapshot header incomplete ({got} bytes)")));
    }
    if &fixed[0..8] != MAGIC {
        return Err(corrupt("bad snapshot magic".into()));
    }
    StoreError::check_version(&fixed, MAGIC, VERSION, "snapshot", path)?;
    let n = u32_at(&fixed, 12) as usize;
    if n > MAX_MEMBERSHIP_BYTES {
        return Err(corrupt(format!("membership length {n} too large")));
    }
    let mut full = vec![0u8; FIXED_HEADER_BYTES + n + 4];
    let got = read_full_at(f, &mut full, 0).map_err(|e| StoreError::io("read", path, e))?;
    if got < full.len() {
        return Err(corrupt("snapshot header incomplete".into()));
    }
    let end = FIXED_HEADER_BYTES + n;
    if u32_at(&full, end) != crc32c::crc32c(&full[..end]) {
        return Err(corrupt("snapshot header crc mismatch".into()));
    }
    let version = u16::from_le_bytes([full[8], full[9]]);
    if version != VERSION {
        return Err(corrupt(format!("unsupported snapshot version {version}")));
    }
    Ok((
        SnapshotMeta {
            last_index: u64_at(&full, 16),
            last_term: u64_at(&full, 24),
            membership: Bytes::copy_from_slice(&full[FIXED_HEADER_BYTES..end]),
        },
        (end + 4) as u64,
    ))
}

/// The snapshots of one group, in their own directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    max_keep: usize,
}

impl SnapshotStore {
    /// Opens (creating) `dir`, removing incomplete `.tmp` files left by an
    /// interrupted save or install. `max_keep_snapshots` (at least 1; the
    /// original's default is 2) complete snapshots are kept. Blocking.
    pub fn open(dir: &Path, max_keep_snapshots: usize) -> Result<SnapshotStore> {
        Self::open_with_fs(dir, max_keep_snapshots, Arc::new(OsFs))
    }

    /// [`open`](SnapshotStore::open) through a chosen file layer (tests inject faults).
    pub fn open_with_fs(
        dir: &Path,
        max_keep_snapshots: usize,
        fs: Arc<dyn FileSystem>,
    ) -> Result<SnapshotStore> {
        if max_keep_snapshots == 0 {
            return Err(StoreError::InvalidArgument(
                "max_keep_snapshots must be at least 1".into(),
            ));
        }
        fs.create_dir_all(dir)
            .map_err(|e| StoreError::io("create dir", dir, e))?;
        let names = fs
            .list_files(dir)
            .map_err(|e| StoreError::io("list", dir, e))?;
        for n in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
            let p = dir.join(n);
            tracing::info!(file = %p.display(), "removing incomplete snapshot");
            fs.remove_file(&p)
                .map_err(|e| StoreError::io("remove", &p, e))?;
        }
        Ok(SnapshotStore {
            fs,
            dir: dir.to_path_buf(),
            max_keep: max_keep_snapshots,
        })
    }

    /// Complete snapshots, oldest first, with verified headers. Blocking: opens
    /// each file. A damaged header is a [`StoreError::Corrupt`].
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let names = self
            .fs
            .list_files(&self.dir)
            .map_err(|e| StoreError::io("list", &self.dir, e))?;
        let mut out = Vec::new();
        for n in names.iter().filter(|n| n.ends_with(SUFFIX)) {
            let path = self.dir.join(n);
            let f = match self.fs.open(&path, OpenMode::Read) {
                Ok(f) => f,
                // Removed by a concurrent retention pass since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("open", &path, e)),
            };
            let (meta, _) = read_header(f.as_ref(), &path)?;
            let file_bytes = f.len().map_err(|e| StoreError::io("stat", &path, e))?;
            out.push(SnapshotInfo {
                meta,
                path,
                file_bytes,
            });
        }
        out.sort_by_key(|i| (i.meta.last_index, i.meta.last_term));
        Ok(out)
    }

    /// The newest complete snapshot, if any. Blocking.
    pub fn latest(&self) -> Result<Option<SnapshotInfo>> {
        Ok(self.list()?.pop())
    }

    /// Starts writing a snapshot covering `meta`. The state machine then
    /// streams its data through [`SnapshotWriter::write`] (from a consistent
    /// view it keeps while new writes continue) and calls `finish`.
    /// Blocking (creates a file).
    pub fn begin(&self, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        let header = encode_header(&meta)?;
        let final_path = self.dir.join(file_name(&meta));
        let tmp_path = self.dir.join(format!("{}{TMP_SUFFIX}", file_name(&meta)));
        let file = self
            .fs
            .open(&tmp_path, OpenMode::Create)
            .map_err(|e| StoreError::io("create", &tmp_path, e))?;
        let mut w = SnapshotWriter {
            store: self.clone(),
            file,
            tmp_path,
            final_path,
            meta,
            pos: 0,
            buf: BytesMut::new(),
            data_bytes: 0,
            chunks: 0,
            done: false,
        };
        w.write_raw(&header)?;
        Ok(w)
    }

    /// Opens a snapshot for reading its data (restore) or its raw bytes
    /// (sending to a follower). Blocking; verifies the header.
    pub fn open_reader(&self, info: &SnapshotInfo) -> Result<SnapshotReader> {
        SnapshotReader::open(self.fs.as_ref(), &info.path)
    }

    /// Starts receiving a snapshot from a leader into a temp file. Only one
    /// install runs at a time per store; a new one replaces an unfinished one.
    /// Blocking (creates a file).
    pub fn begin_install(&self) -> Result<SnapshotInstaller> {
        let tmp_path = self.dir.join(INSTALL_TMP);
        let file = self
            .fs
            .open(&tmp_path, OpenMode::Create)
            .map_err(|e| StoreError::io("create", &tmp_path, e))?;
        Ok(SnapshotInstaller {
            store: self.clone(),
            file,
            tmp_path,
            received: 0,
            done: false,
        })
    }

    fn publish(&self, file: &Arc<dyn StoreFile>, tmp: &Path, dst: &Path) -> Result<()> {
        file.sync_data()
            .map_err(|e| StoreError::io("fsync", tmp, e))?;
        self.fs
            .rename(tmp, dst)
            .map_err(|e| StoreError::io("rename", tmp, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io("fsync dir", &self.dir, e))?;
        self.apply_retention()
    }

    /// Deletes the oldest snapshots beyond `max_keep_snapshots`. Blocking.
    /// Safe to run from two threads at once (a periodic snapshot finishing
    /// while one from the leader is installed): a file the other pass removed
    /// first counts as removed.
    pub fn apply_retention(&self) -> Result<()> {
        let all = self.list()?;
        if all.len() <= self.max_keep {
            return Ok(());
        }
        for old in &all[..all.len() - self.max_keep] {
            match self.fs.remove_file(&old.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("remove", &old.path, e)),
            }
            tracing::info!(file = %old.path.display(), last_index = old.meta.last_index, "removed old snapshot");
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io("fsync dir", &self.dir, e))
    }
}

/// Opens the complete snapshot at `index` in the snapshot directory `dir`
/// for reading, without changing anything in the directory (unlike
/// [`SnapshotStore::open`], which removes incomplete files). `Ok(None)` when
/// no complete snapshot covers exactly `index`. The open file stays readable
/// through the reader even after retention removes it from the directory.
/// Blocking; verifies the header.
pub fn open_snapshot_at(dir: &Path, index: u64) -> Result<Option<SnapshotReader>> {
    let fs = OsFs;
    let names = match fs.list_files(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let prefix = format!("{index:020}-");
    let Some(name) = names
        .iter()
        .find(|n| n.starts_with(&prefix) && n.ends_with(SUFFIX))
    else {
        return Ok(None);
    };
    match SnapshotReader::open(&fs, &dir.join(name)) {
        Ok(r) => Ok(Some(r)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Streams one snapshot into a temp file. Dropping it without `finish`
/// removes the temp file. Every method is blocking (file writes).
#[derive(Debug)]
pub struct SnapshotWriter {
    store: SnapshotStore,
    file: Arc<dyn StoreFile>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    meta: SnapshotMeta,
    pos: u64,
    buf: BytesMut,
    data_bytes: u64,
    chunks: u64,
    done: bool,
}

impl SnapshotWriter {
    fn write_raw(&mut self, b: &[u8]) -> Result<()> {
        write_all_at(self.file.as_ref(), b, self.pos)
            .map_err(|e| StoreError::io("write", &self.tmp_path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn emit_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split();
        let mut framed = Vec::with_capacity(CHUNK_HEADER_BYTES + data.len());
        framed.extend_from_slice(&(data.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32c::crc32c(&data).to_le_bytes());
        framed.extend_from_slice(&data);
        self.write_raw(&framed)?;
        self.data_bytes += data.len() as u64;
        self.chunks += 1;
        Ok(())
    }

    /// Appends `data` to the snapshot. Buffers up to [`WRITER_CHUNK_BYTES`]
    /// and writes whole checksummed chunks.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = WRITER_CHUNK_BYTES - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() >= WRITER_CHUNK_BYTES {
                self.emit_chunk()?;
            }
        }
        Ok(())
    }

    /// Data bytes written so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes + self.buf.len() as u64
    }

    /// Writes the trailer, fsyncs, renames the file into place, fsyncs the
    /// directory and applies retention. After Ok the snapshot survives power
    /// loss. On error the temp file is removed and older snapshots are intact.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        self.emit_chunk()?;
        let mut t = [0u8; TRAILER_BYTES];
        t[8..16].copy_from_slice(&self.data_bytes.to_le_bytes());
        t[16..24].copy_from_slice(&self.chunks.to_le_bytes());
        let crc = crc32c::crc32c(&t[8..24]);
        t[4..8].copy_from_slice(&crc.to_le_bytes());
        self.write_raw(&t)?;
        self.store
            .publish(&self.file, &self.tmp_path, &self.final_path)?;
        self.done = true;
        tracing::debug!(file = %self.final_path.display(), last_index = self.meta.last_index, data_bytes = self.data_bytes, "snapshot file written");
        Ok(SnapshotInfo {
            meta: self.meta.clone(),
            path: self.final_path.clone(),
            file_bytes: self.pos,
        })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.store.fs.remove_file(&self.tmp_path);
        }
    }
}

/// Reads a snapshot file: its data chunk by chunk (verified), or its raw bytes
/// at any offset (to send to a follower, resumable from any offset).
#[derive(Debug)]
pub struct SnapshotReader {
    file: Arc<dyn StoreFile>,
    path: PathBuf,
    meta: SnapshotMeta,
    file_bytes: u64,
    pos: u64,
    data_bytes: u64,
    chunks: u64,
    finished: bool,
}

impl SnapshotReader {
    fn open(fs: &dyn FileSystem, path: &Path) -> Result<SnapshotReader> {
        let file = fs
            .open(path, OpenMode::Read)
            .map_err(|e| StoreError::io("open", path, e))?;
        let (meta, header_len) = read_header(file.as_ref(), path)?;
        let file_bytes = file.len().map_err(|e| StoreError::io("stat", path, e))?;
        Ok(SnapshotReader {
            file,
            path: path.to_path_buf(),
            meta,
            file_bytes,
            pos: header_len,
            data_bytes: 0,
            chunks: 0,
            finished: false,
        })
    }

    /// Reads a snapshot held in `file` (any [`StoreFile`]: a region of a
    /// larger file, say) as [`SnapshotStore::open_reader`] reads one from a
    /// snapshot directory. Blocking; verifies the header.
    pub fn from_file(file: Arc<dyn StoreFile>) -> Result<SnapshotReader> {
        let path = file.path().to_path_buf();
        let (meta, header_len) = read_header(file.as_ref(), &path)?;
        let file_bytes = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
        Ok(SnapshotReader {
            file,
            path,
            meta,
            file_bytes,
            pos: header_len,
            data_bytes: 0,
            chunks: 0,
            finished: false,
        })
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Size of the whole file in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    /// The next data chunk, verified by CRC; `Ok(None)` after the trailer was
    /// verified. Any damage is a [`StoreError::Corrupt`] naming the offset.
    /// Blocking (one read per chunk).
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.finished {
            return Ok(None);
        }
        let at = self.pos;
        let corrupt = |r: String| StoreError::corrupt(&self.path, at, None, r);
        let mut h = [0u8; CHUNK_HEADER_BYTES];
        let got = read_full_at(self.file.as_ref(), &mut h, at)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        if got < CHUNK_HEADER_BYTES {
            return Err(corrupt("snapshot ends without its trailer".into()));
        }
        let len = u32_at(&h, 0) as usize;
        if len == 0 {
            let mut t = [0u8; TRAILER_BYTES];
            let got = read_full_at(self.file.as_ref(), &mut t, at)
                .map_err(|e| StoreError::io("read", &self.path, e))?;
            if got < TRAILER_BYTES || u32_at(&t, 4) != crc32c::crc32c(&t[8..24]) {
                return Err(corrupt("snapshot trailer damaged".into()));
            }
            if u64_at(&t, 8) != self.data_bytes || u64_at(&t, 16) != self.chunks {
                return Err(corrupt(format!(
                    "trailer says {} bytes in {} chunks, file holds {} bytes in {} chunks",
                    u64_at(&t, 8),
                    u64_at(&t, 16),
                    self.data_bytes,
                    self.chunks
                )));
            }
            if at + TRAILER_BYTES as u64 != self.file_bytes {
                return Err(corrupt("bytes after the snapshot trailer".into()));
            }
            self.finished = true;
            return Ok(None);
        }
        if len > MAX_CHUNK_BYTES || at + (CHUNK_HEADER_BYTES + len) as u64 > self.file_bytes {
            return Err(corrupt(format!("chunk length {len} is invalid")));
        }
        let mut data = vec![0u8; len];
        let got = read_full_at(
            self.file.as_ref(),
            &mut data,
            at + CHUNK_HEADER_BYTES as u64,
        )
        .map_err(|e| StoreError::io("read", &self.path, e))?;
        if got < len {
            return Err(corrupt("chunk truncated".into()));
        }
        if crc32c::crc32c(&data) != u32_at(&h, 4) {
            return Err(corrupt("chunk crc mismatch".into()));
        }
        self.pos = at + (CHUNK_HEADER_BYTES + len) as u64;
        self.data_bytes += len as u64;
        self.chunks += 1;
        Ok(Some(Bytes::from(data)))
    }

    /// Reads every chunk and the trailer, discarding the data. Blocking; reads
    /// the whole file.
    pub fn verify(&mut self) -> Result<()> {
        while self.next_chunk()?.is_some() {}
        Ok(())
    }

    /// Up to `max_len` raw bytes of the file starting at `offset` (empty at or
    /// past the end). A leader sends these to a follower's
    /// [`SnapshotInstaller`]; after a broken transfer it resumes from the
    /// follower's `received_bytes`. Blocking (one read).
    pub fn read_raw(&self, offset: u64, max_len: usize) -> Result<Bytes> {
        if offset >= self.file_bytes {
            return Ok(Bytes::new());
        }
        let n = (max_len as u64).min(self.file_bytes - offset) as usize;
        let mut b = vec![0u8; n];
        let got = read_full_at(self.file.as_ref(), &mut b, offset)
            .map_err(|e| StoreError::io("read", &self.path, e))?;
        b.truncate(got);
        Ok(Bytes::from(b))
    }
}

/// Receives a snapshot file from a leader. Bytes go to a temp file; `finish`
/// verifies every checksum before the snapshot replaces anything, so an
/// interrupted or damaged transfer leaves the previous state intact. Dropping
/// it without `finish` removes the temp file. Every method is blocking.
#[derive(Debug)]
pub struct SnapshotInstaller {
    store: SnapshotStore,
    file: Arc<dyn StoreFile>,
    tmp_path: PathBuf,
    received: u64,
    done: bool,
}

impl SnapshotInstaller {
    /// Bytes received so far: the offset the leader must send next.
    pub fn received_bytes(&self) -> u64 {
        self.received
    }

    /// Stores `data` at `offset`. `offset` must equal [`received_bytes`](SnapshotInstaller::received_bytes)
    /// or be below it (a resent range is rewritten); a gap is an
    /// [`StoreError::InvalidArgument`] and changes nothing.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset > self.received {
            return Err(StoreError::InvalidArgument(format!(
                "snapshot chunk at offset {offset} but only {} bytes received",
                self.received
            )));
        }
        write_all_at(self.file.as_ref(), data, offset)
            .map_err(|e| StoreError::io("write", &self.tmp_path, e))?;
        self.received = self.received.max(offset + data.len() as u64);
        Ok(())
    }

    /// Verifies the whole received file (header, every chunk, trailer), then
    /// fsyncs it, renames it into place and fsyncs the directory; applies
    /// retention. Returns the installed snapshot. On any error nothing
    /// changed and the temp file is removed.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        self.file
            .set_len(self.received)
            .map_err(|e| StoreError::io("truncate", &self.tmp_path, e))?;
        let mut reader = SnapshotReader::open(self.store.fs.as_ref(), &self.tmp_path)?;
        reader.verify()?;
        let meta = reader.meta.clone();
        let dst = self.store.dir.join(file_name(&meta));
        self.store.publish(&self.file, &self.tmp_path, &dst)?;
        self.done = true;
        tracing::debug!(file = %dst.display(), last_index = meta.last_index, "snapshot file installed");
        Ok(SnapshotInfo {
            meta,
            path: dst,
            file_bytes: self.received,
        })
    }
}

impl Drop for SnapshotInstaller {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.store.fs.remove_file(&self.tmp_path);
        }
    }
}
