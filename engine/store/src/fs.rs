//! The file layer the store writes through, and a fault-injecting implementation.
//!
//! Every byte the store persists goes through [`FileSystem`] and [`StoreFile`].
//! [`OsFs`] is the real implementation; [`FaultyFs`] wraps it and fails chosen
//! operations on demand ([`Failpoints`]), so tests can reproduce fsync errors,
//! write errors and a full disk deterministically.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// How [`FileSystem::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Create the file, truncating it if it exists; read and write.
    Create,
}

/// One open file. Positional IO only, so one handle is shared between the
/// writer, the syncer and readers without a seek position to race on.
// `len` is fallible (fstat), so an `is_empty` twin would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait StoreFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset` (pread). Blocking.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `offset` (pwrite). Blocking.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Flushes the file's data and the metadata needed to read it (fdatasync). Blocking.
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the file length (ftruncate). Blocking.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The current file length (fstat). Blocking.
    fn len(&self) -> io::Result<u64>;
    /// The path the file was opened with, for error messages.
    fn path(&self) -> &Path;
}

/// Directory-level operations. All blocking.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoreFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable (fsync on the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Lists the names of the regular files in `dir`.
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// Writes all of `buf` at `offset`, looping over short writes.
pub(crate) fn write_all_at(f: &dyn StoreFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads as many bytes as fit in `buf` at `offset`; returns fewer only at end of file.
pub(crate) fn read_full_at(f: &dyn StoreFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile {
    file: File,
    path: PathBuf,
}

impl StoreFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

impl FileSystem for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoreFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::Create => o.read(true).write(true).create(true).truncate(true),
        };
        Ok(Arc::new(OsFile {
            file: o.open(path)?,
            path: path.to_path_buf(),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file()
                && let Some(name) = e.file_name().to_str()
            {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Switches that make [`FaultyFs`] fail operations. Shared with the test that
/// flips them; every switch takes effect on the next operation.
#[derive(Debug)]
pub struct Failpoints {
    /// Number of `sync_data`/`sync_dir` calls that still succeed; when it
    /// reaches 0 every later sync fails with EIO. Negative: never fail.
    pub syncs_until_failure: AtomicI64,
    /// While set, writes store a part of their data then fail with ENOSPC, and
    /// creating files fails with ENOSPC, like a full disk.
    pub disk_full: AtomicBool,
    /// While set, writes fail with EIO without writing anything.
    pub write_eio: AtomicBool,
    /// Number of syncs performed (file and directory).
    pub sync_count: AtomicU64,
    /// Number of write calls that failed because of `disk_full`.
    pub disk_full_hits: AtomicU64,
    /// When a file's sync fails, cut the file back to its length at its last
    /// successful sync, as a kernel that drops dirty pages after a failed
    /// writeback would leave it (a tail-only approximation).
    pub lose_unsynced_on_sync_failure: AtomicBool,
}

impl Default for Failpoints {
    fn default() -> Self {
        Failpoints {
            syncs_until_failure: AtomicI64::new(-1),
            disk_full: AtomicBool::new(false),
            write_eio: AtomicBool::new(false),
            sync_count: AtomicU64::new(0),
            disk_full_hits: AtomicU64::new(0),
            lose_unsynced_on_sync_failure: AtomicBool::new(false),
        }
    }
}

impl Failpoints {
    fn check_sync(&self) -> io::Result<()> {
        self.sync_count.fetch_add(1, Ordering::SeqCst);
        let left = self.syncs_until_failure.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if left > 0 {
            self.syncs_until_failure.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A [`FileSystem`] over [`OsFs`] that fails operations as its [`Failpoints`] say.
/// For tests of fault handling; costs one atomic load per operation.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    /// The switches; clone the `Arc` to flip them from a test.
    pub failpoints: Arc<Failpoints>,
}

impl FaultyFs {
    /// A fault-injecting file system with every switch off.
    pub fn new() -> Self {
        FaultyFs::default()
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StoreFile>,
    fp: Arc<Failpoints>,
    /// Length at the last successful sync (or at open).
    synced_len: AtomicU64,
}

impl StoreFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.fp.write_eio.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        if self.fp.disk_full.load(Ordering::SeqCst) {
            self.fp.disk_full_hits.fetch_add(1, Ordering::SeqCst);
            // A full disk often accepts part of a write: store half, then fail.
            let part = buf.len() / 2;
            if part > 0 {
                self.inner.write_at(&buf[..part], offset)?;
            }
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        let len = self.inner.len()?;
        if let Err(e) = self.fp.check_sync() {
            if self.fp.lose_unsynced_on_sync_failure.load(Ordering::SeqCst) {
                let keep = self.synced_len.load(Ordering::SeqCst).min(len);
                self.inner.set_len(keep)?;
            }
            return Err(e);
        }
        self.inner.sync_data()?;
        self.synced_len.store(len, Ordering::SeqCst);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.synced_len.fetch_min(len, Ordering::SeqCst);
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl FileSystem for FaultyFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoreFile>> {
        if mode == OpenMode::Create && self.failpoints.disk_full.load(Ordering::SeqCst) {
            self.failpoints
                .disk_full_hits
                .fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let inner = OsFs.open(path, mode)?;
        let synced_len = AtomicU64::new(inner.len()?);
        Ok(Arc::new(FaultyFile {
            inner,
            fp: self.failpoints.clone(),
            synced_len,
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.failpoints.check_sync()?;
        OsFs.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFs.create_dir_all(dir)
    }
    fn list_files(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsFs.list_files(dir)
    }
}
