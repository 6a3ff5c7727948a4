//! The log's two IO threads: a writer that executes commands in submission
//! order, and a syncer that runs fdatasync concurrently with the writer so one
//! fsync covers every write completed before it started (group commit).
//!
//! Progress is published as two sequence numbers (`written_seq`, `synced_seq`):
//! every command that changes the log carries a sequence number assigned by the
//! owner, and "synced up to N" means every command up to N is durable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::{StoreError, is_disk_full};
use crate::fs::{FileSystem, OpenMode, StoreFile, write_all_at};
use crate::hard_state::{HardState, save_hard_state};
use crate::record::LogRecord;
use crate::segment::{encode_segment_header, read_span, segment_path};

/// A callback the IO threads invoke after they publish progress. It runs on an
/// IO thread: keep it short and non-blocking (e.g. wake a task).
pub type Notifier = Arc<dyn Fn() + Send + Sync>;

/// Identifies a read submitted with [`crate::RaftLog::read`].
pub type ReadId = u64;

/// A contiguous run of records inside one segment.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) segment: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) first: u64,
    pub(crate) count: usize,
}

#[derive(Debug)]
pub(crate) enum Command {
    /// Writes whole records at `offset` of segment `segment`; `create` first
    /// creates (or re-creates) that segment with this torn-tail window.
    Append {
        seq: u64,
        segment: u64,
        create: Option<u32>,
        offset: u64,
        data: Bytes,
    },
    /// Removes the listed segments (newest first), then cuts `truncate.0` to
    /// `truncate.1` bytes, then optionally creates an empty segment.
    Truncate {
        seq: u64,
        remove: Vec<u64>,
        truncate: Option<(u64, u64)>,
        create: Option<(u64, u32)>,
    },
    /// Removes whole segments behind a snapshot (oldest first), each given
    /// as its first and last index.
    RemovePrefix {
        remove: Vec<(u64, u64)>,
    },
    SaveHardState {
        seq: u64,
        state: HardState,
    },
    Read {
        id: ReadId,
        spans: Vec<Span>,
    },
    /// Asks the syncer to sync now even with `sync_force` off.
    Flush,
    Shutdown,
}

/// A completed disk read: its id and the records or the error.
pub(crate) type ReadResult = (ReadId, Result<Vec<LogRecord>, StoreError>);

/// State shared between the owner and the IO threads.
pub(crate) struct Shared {
    pub(crate) written_seq: AtomicU64,
    pub(crate) synced_seq: AtomicU64,
    pub(crate) disk_full: AtomicBool,
    pub(crate) stopped: AtomicBool,
    /// The owner is closing: give up waiting for disk space.
    pub(crate) closing: AtomicBool,
    pub(crate) fatal: Mutex<Option<String>>,
    pub(crate) reads_done: Mutex<Vec<ReadResult>>,
    pub(crate) generation: Mutex<u64>,
    pub(crate) progress_cv: Condvar,
    pub(crate) waker: Mutex<Option<Waker>>,
    pub(crate) notifier: Option<Notifier>,
    /// Durations of the sync thread's fsyncs.
    pub(crate) fsync: Arc<crate::fsync_stats::FsyncStats>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind that is
    // still consistent for our use (counters and queues), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(notifier: Option<Notifier>, seq: u64) -> Self {
        Shared {
            written_seq: AtomicU64::new(seq),
            synced_seq: AtomicU64::new(seq),
            disk_full: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            fatal: Mutex::new(None),
            reads_done: Mutex::new(Vec::new()),
            generation: Mutex::new(0),
            progress_cv: Condvar::new(),
            waker: Mutex::new(None),
            notifier,
            fsync: Arc::default(),
        }
    }

    /// Publishes "something changed" to every kind of waiter.
    pub(crate) fn notify(&self) {
        *lock(&self.generation) += 1;
        self.progress_cv.notify_all();
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
        if let Some(n) = &self.notifier {
            n();
        }
    }

    pub(crate) fn set_fatal(&self, cause: String) {
        {
            let mut f = lock(&self.fatal);
            if f.is_none() {
                tracing::error!(%cause, "log stopped");
                *f = Some(cause);
            }
        }
        self.stopped.store(true, Ordering::SeqCst);
        self.notify();
    }

    pub(crate) fn fatal(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }
}

/// Writer/syncer coordination.
struct SyncState {
    file: Option<Arc<dyn StoreFile>>,
    written_seq: u64,
    synced_seq: u64,
    written_bytes: u64,
    synced_bytes: u64,
    first_unsynced_at: Option<Instant>,
    flush_requested: bool,
    shutdown: bool,
}

pub(crate) struct SyncShared {
    state: Mutex<SyncState>,
    cv: Condvar,
}

#[derive(Debug, Clone)]
pub(crate) struct IoConfig {
    pub(crate) sync_force: bool,
    pub(crate) sync_interval: Duration,
    pub(crate) window_bytes: u64,
    pub(crate) disk_full_retry: Duration,
    /// Fsyncs at least this slow are logged at WARN.
    pub(crate) slow_fsync: Duration,
    /// The group named in log lines.
    pub(crate) group: u32,
}

pub(crate) struct Writer {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    pub(crate) group_dir: PathBuf,
    pub(crate) files: BTreeMap<u64, Arc<dyn StoreFile>>,
    pub(crate) current: Option<u64>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sync: Arc<SyncShared>,
    pub(crate) cfg: IoConfig,
}

pub(crate) fn new_sync_shared(file: Option<Arc<dyn StoreFile>>, seq: u64) -> Arc<SyncShared> {
    Arc::new(SyncShared {
        state: Mutex::new(SyncState {
            file,
            written_seq: seq,
            synced_seq: seq,
            written_bytes: 0,
            synced_bytes: 0,
            first_unsynced_at: None,
            flush_requested: false,
            shutdown: false,
        }),
        cv: Condvar::new(),
    })
}

/// Small appends queued back to back are joined into one write up to this
/// many bytes (one syscall instead of many when the owner appends entry by
/// entry). Larger batches are written as they come, without a copy.
const COALESCE_MAX_BYTES: usize = 256 << 10;

/// Joins the appends queued right behind the given one that continue it in
/// the same segment, into one write of at most [`COALESCE_MAX_BYTES`] that
/// completes every joined sequence number at once. Returns the (possibly
/// joined) append and the first queued command that could not join.
fn coalesce(
    rx: &Receiver<Command>,
    max_bytes: usize,
    seq: u64,
    segment: u64,
    create: Option<u32>,
    offset: u64,
    data: Bytes,
) -> (Command, Option<Command>) {
    let mut joined: Option<BytesMut> = None;
    let mut len = data.len();
    let mut last_seq = seq;
    let mut rest = None;
    while let Ok(c) = rx.try_recv() {
        match c {
            Command::Append {
                seq: s,
                segment: g,
                create: None,
                offset: o,
                data: d,
            } if g == segment && o == offset + len as u64 && len + d.len() <= max_bytes => {
                let b = joined.get_or_insert_with(|| {
                    let mut b = BytesMut::with_capacity(max_bytes);
                    b.extend_from_slice(&data);
                    b
                });
                b.extend_from_slice(&d);
                len += d.len();
                last_seq = s;
            }
            other => {
                rest = Some(other);
                break;
            }
        }
    }
    let data = joined.map(BytesMut::freeze).unwrap_or(data);
    (
        Command::Append {
            seq: last_seq,
            segment,
            create,
            offset,
            data,
        },
        rest,
    )
}

impl Writer {
    fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    fn file(&self, segment: u64) -> Result<Arc<dyn StoreFile>, StoreError> {
        self.files
            .get(&segment)
            .cloned()
            .ok_or_else(|| StoreError::Stopped {
                cause: format!("internal: segment {segment} is not open"),
            })
    }

    /// Runs until `Shutdown` or until the channel closes.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            let cmd = match next.take() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            let cmd = match cmd {
                Command::Append {
                    seq,
                    segment,
                    create,
                    offset,
                    data,
                } if data.len() < COALESCE_MAX_BYTES => {
                    // Joined writes stay within the torn-tail window too.
                    let max = COALESCE_MAX_BYTES.min(self.cfg.window_bytes as usize);
                    let (cmd, rest) = coalesce(&rx, max, seq, segment, create, offset, data);
                    next = rest;
                    cmd
                }
                c => c,
            };
            match cmd {
                Command::Shutdown => break,
                Command::Read { id, spans } => {
                    let r = if self.stopped() {
                        Err(self.stopped_error())
                    } else {
                        self.read(&spans)
                    };
                    lock(&self.shared.reads_done).push((id, r));
                    self.shared.notify();
                }
                Command::Flush => {
                    let mut st = lock(&self.sync.state);
                    st.flush_requested = true;
                    self.sync.cv.notify_all();
                }
                _ if self.stopped() => {}
                cmd => {
                    if let Err(e) = self.execute(cmd) {
                        self.shared.set_fatal(e.to_string());
                    }
                }
            }
        }
        self.shutdown_syncer();
    }

    fn stopped_error(&self) -> StoreError {
        StoreError::Stopped {
            cause: self.shared.fatal().unwrap_or_else(|| "log stopped".into()),
        }
    }

    fn shutdown_syncer(&self) {
        let mut st = lock(&self.sync.state);
        st.shutdown = true;
        self.sync.cv.notify_all();
    }

    fn execute(&mut self, cmd: Command) -> Result<(), StoreError> {
        match cmd {
            Command::Append {
                seq,
                segment,
                create,
                offset,
                data,
            } => {
                if let Some(window) = create {
                    self.create_segment(segment, window)?;
                }
                let file = self.file(segment)?;
                self.wait_for_window(data.len() as u64)?;
                self.retry_disk_full(file.path(), || write_all_at(file.as_ref(), &data, offset))
                    .map_err(|e| StoreError::io("write", file.path(), e))?;
                let mut st = lock(&self.sync.state);
                st.written_seq = seq;
                st.written_bytes += data.len() as u64;
                if st.first_unsynced_at.is_none() {
                    st.first_unsynced_at = Some(Instant::now());
                }
                self.sync.cv.notify_all();
                drop(st);
                self.shared.written_seq.store(seq, Ordering::SeqCst);
                self.shared.notify();
            }
            Command::Truncate {
                seq,
                remove,
                truncate,
                create,
            } => {
                self.sync_current()?;
                for seg in &remove {
                    let path = segment_path(&self.dir, *seg);
                    self.files.remove(seg);
                    if self.current == Some(*seg) {
                        self.current = None;
                        lock(&self.sync.state).file = None;
                    }
                    self.fs
                        .remove_file(&path)
                        .map_err(|e| StoreError::io("remove", &path, e))?;
                    // One removal durable at a time, newest first: whatever
                    // power loss keeps is a prefix of the log, never a gap.
                    self.fs
                        .sync_dir(&self.dir)
                        .map_err(|e| StoreError::io("fsync dir", &self.dir, e))?;
                }
                if let Some((seg, len)) = truncate {
                    let file = self.file(seg)?;
                    file.set_len(len)
                        .map_err(|e| StoreError::io("truncate", file.path(), e))?;
                    file.sync_data()
                        .map_err(|e| StoreError::io("fsync", file.path(), e))?;
                    self.current = Some(seg);
                    lock(&self.sync.state).file = Some(file);
                }
                if let Some((seg, window)) = create {
                    self.create_segment(seg, window)?;
                }
                self.mark_synced(seq);
            }
            Command::RemovePrefix { remove } => {
                for &(seg, last_index) in &remove {
                    let path = segment_path(&self.dir, seg);
                    self.files.remove(&seg);
                    match self.fs.remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::io("remove", &path, e)),
                    }
                    // Oldest first, each durable before the next: power loss
                    // leaves a suffix of the log, never a gap (recovery
                    // refuses gaps).
                    self.fs
                        .sync_dir(&self.dir)
                        .map_err(|e| StoreError::io("fsync dir", &self.dir, e))?;
                    tracing::info!(
                        group = self.cfg.group,
                        first_index = seg,
                        index = last_index,
                        file = %path.display(),
                        "removed log segment behind snapshot"
                    );
                }
            }
            Command::SaveHardState { seq, state } => {
                self.sync_current()?;
                let fs = self.fs.clone();
                let dir = self.group_dir.clone();
                loop {
                    match save_hard_state(fs.as_ref(), &dir, &state) {
                        Ok(()) => break,
                        Err(StoreError::DiskFull { path }) => {
                            self.disk_full_wait(&path)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.clear_disk_full();
                self.mark_synced(seq);
            }
            Command::Read { .. } | Command::Flush | Command::Shutdown => {}
        }
        Ok(())
    }

    fn create_segment(&mut self, first_index: u64, window: u32) -> Result<(), StoreError> {
        // Everything in the previous segment becomes durable before the new one
        // receives data, so only the newest segment can ever have a torn tail.
        self.sync_current()?;
        let path = segment_path(&self.dir, first_index);
        let header = encode_segment_header(first_index, window);
        let fs = self.fs.clone();
        let file = self
            .retry_disk_full(&path, || {
                let f = fs.open(&path, OpenMode::Create)?;
                write_all_at(f.as_ref(), &header, 0)?;
                Ok(f)
            })
            .map_err(|e| StoreError::io("create", &path, e))?;
        file.sync_data()
            .map_err(|e| StoreError::io("fsync", &path, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StoreError::io("fsync dir", &self.dir, e))?;
        self.files.insert(first_index, file.clone());
        self.current = Some(first_index);
        lock(&self.sync.state).file = Some(file);
        tracing::debug!(file = %path.display(), "created log segment");
        Ok(())
    }

    /// Syncs the current segment on this thread and marks every completed write synced.
    fn sync_current(&mut self) -> Result<(), StoreError> {
        let (file, seq, bytes) = {
            let st = lock(&self.sync.state);
            (st.file.clone(), st.written_seq, st.written_bytes)
        };
        if let Some(f) = file {
            f.sync_data()
                .map_err(|e| StoreError::io("fsync", f.path(), e))?;
        }
        let mut st = lock(&self.sync.state);
        st.synced_bytes = st.synced_bytes.max(bytes);
        if st.synced_bytes == st.written_bytes {
            st.first_unsynced_at = None;
        }
        st.synced_seq = st.synced_seq.max(seq);
        let s = st.synced_seq;
        self.sync.cv.notify_all();
        drop(st);
        self.shared.synced_seq.fetch_max(s, Ordering::SeqCst);
        Ok(())
    }

    fn mark_synced(&self, seq: u64) {
        let mut st = lock(&self.sync.state);
        st.written_seq = seq;
        st.synced_seq = st.synced_seq.max(seq);
        drop(st);
        self.shared.written_seq.store(seq, Ordering::SeqCst);
        self.shared.synced_seq.fetch_max(seq, Ordering::SeqCst);
        self.shared.notify();
    }

    /// Blocks until writing `len` more bytes keeps the unsynced tail within the
    /// torn-tail window (recovery relies on that bound).
    fn wait_for_window(&self, len: u64) -> Result<(), StoreError> {
        let mut st = lock(&self.sync.state);
        loop {
            if self.stopped() {
                return Err(self.stopped_error());
            }
            let unsynced = st.written_bytes - st.synced_bytes;
            if unsynced == 0 || unsynced + len <= self.cfg.window_bytes {
                return Ok(());
            }
            st.flush_requested = true;
            self.sync.cv.notify_all();
            st = self.sync.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs `op`, and while it fails with "disk full" reports the condition,
    /// waits and runs it again (positional writes make the retry idempotent).
    fn retry_disk_full<T>(
        &self,
        path: &Path,
        mut op: impl FnMut() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        loop {
            match op() {
                Ok(v) => {
                    self.clear_disk_full();
                    return Ok(v);
                }
                Err(e) if is_disk_full(&e) => {
                    if self.disk_full_wait(path).is_err() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn disk_full_wait(&self, path: &Path) -> Result<(), StoreError> {
        if !self.shared.disk_full.swap(true, Ordering::SeqCst) {
            tracing::warn!(file = %path.display(), "disk full: refusing new writes, retrying the pending one");
            self.shared.notify();
        }
        if self.shared.closing.load(Ordering::SeqCst) || self.stopped() {
            return Err(StoreError::DiskFull {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(self.cfg.disk_full_retry);
        Ok(())
    }

    fn clear_disk_full(&self) {
        if self.shared.disk_full.swap(false, Ordering::SeqCst) {
            tracing::info!("disk space available again: writes resume");
            self.shared.notify();
        }
    }

    fn read(&self, spans: &[Span]) -> Result<Vec<LogRecord>, StoreError> {
        let mut out = Vec::with_capacity(spans.iter().map(|s| s.count).sum());
        for s in spans {
            let file = self.file(s.segment)?;
            read_span(
                file.as_ref(),
                file.path(),
                s.start,
                s.end,
                s.first,
                s.count,
                &mut out,
            )?;
        }
        Ok(out)
    }
}

/// The syncer thread: fdatasyncs the current segment whenever writes completed
/// since the last sync (immediately with `sync_force`, else on the interval or
/// when the unsynced bytes approach the window), and publishes `synced_seq`.
pub(crate) fn run_syncer(sync: Arc<SyncShared>, shared: Arc<Shared>, cfg: IoConfig) {
    let mut st = lock(&sync.state);
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        let pending = st.written_seq > st.synced_seq || st.written_bytes > st.synced_bytes;
        if !pending && st.shutdown {
            break;
        }
        let due = pending
            && (cfg.sync_force
                || st.flush_requested
                || st.shutdown
                || st.written_bytes - st.synced_bytes >= cfg.window_bytes / 2
                || st
                    .first_unsynced_at
                    .is_some_and(|t| t.elapsed() >= cfg.sync_interval));
        if due && let Some(file) = st.file.clone() {
            let seq = st.written_seq;
            let bytes = st.written_bytes;
            st.flush_requested = false;
            drop(st);
            let started = Instant::now();
            let r = file.sync_data();
            let took = started.elapsed();
            shared.fsync.record(took);
            if took >= cfg.slow_fsync {
                tracing::warn!(
                    group = cfg.group,
                    file = %file.path().display(),
                    ms = took.as_millis() as u64,
                    "slow fsync"
                );
            }
            st = lock(&sync.state);
            if let Err(e) = r {
                drop(st);
                shared.set_fatal(format!("fsync {} failed: {e}", file.path().display()));
                let _guard = lock(&sync.state);
                sync.cv.notify_all();
                return;
            }
            st.synced_bytes = st.synced_bytes.max(bytes);
            st.synced_seq = st.synced_seq.max(seq);
            st.first_unsynced_at = if st.synced_bytes == st.written_bytes {
                None
            } else {
                Some(Instant::now())
            };
            let s = st.synced_seq;
            sync.cv.notify_all();
            drop(st);
            shared.synced_seq.fetch_max(s, Ordering::SeqCst);
            shared.notify();
            st = lock(&sync.state);
            continue;
        }
        if due {
            // Writes without a file cannot happen; avoid spinning if they do.
            st.synced_seq = st.written_seq;
            st.synced_bytes = st.written_bytes;
            continue;
        }
        st = if pending {
            let wait = st
                .first_unsynced_at
                .map(|t| cfg.sync_interval.saturating_sub(t.elapsed()))
                .unwrap_or(cfg.sync_interval)
                .max(Duration::from_millis(1));
            sync.cv
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0
        } else {
            sync.cv.wait(st).unwrap_or_else(|p| p.into_inner())
        };
    }
}
