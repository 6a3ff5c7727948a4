//! The raft log of one group: the owner-side handle with the in-memory index and
//! the cache of recent entries, driving the IO threads in `io`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::fs::StoreFile;
use crate::hard_state::{HardState, load_hard_state};
use crate::io::{Command, IoConfig, ReadId, Shared, Writer, new_sync_shared, run_syncer};
use crate::record::LogRecord;
use crate::segment::recover_log;

mod append;
mod config;
mod progress;
mod read;
mod truncate;

pub use config::LogConfig;
pub use progress::Changed;

/// Name of the directory holding segment files inside a group directory.
pub const LOG_DIR: &str = "log";

/// Progress of the log as last observed by [`RaftLog::poll_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every entry up to here is written to the file (in the page cache): it
    /// survives a process crash but not power loss.
    pub written_index: u64,
    /// Every entry up to here is fsynced: it survives power loss.
    pub synced_index: u64,
}

/// Result of [`RaftLog::read`].
#[derive(Debug)]
pub enum ReadOutcome {
    /// The entries were in memory.
    Ready(Vec<LogRecord>),
    /// The entries are being read from disk; the result arrives through
    /// [`RaftLog::take_read_results`] after progress is signalled.
    Pending(ReadId),
}

#[derive(Debug)]
struct SegMeta {
    first_index: u64,
    window_bytes: u32,
    offsets: Vec<u32>,
    end: u64,
}

impl SegMeta {
    fn last_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64 - 1
    }
    fn record_end(&self, i: usize) -> u64 {
        self.offsets
            .get(i + 1)
            .map(|o| u64::from(*o))
            .unwrap_or(self.end)
    }
}

#[derive(Debug)]
enum PendingKind {
    Log { last_index: u64 },
    HardState(HardState),
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    bytes_after: u64,
    kind: PendingKind,
}

/// The raft log of one group.
///
/// Owned by the group's task (methods take `&mut self`; no locks on the hot
/// path). Nothing here blocks except [`open`](RaftLog::open),
/// [`close`](RaftLog::close) and the `*_blocking` helpers: `append`,
/// `truncate_suffix`, `compact_prefix`, `read` and `save_hard_state` queue work
/// for the log's writer thread and return at once. Completion is observed by
/// [`poll_progress`](RaftLog::poll_progress), announced through the notifier
/// callback, a `Waker` ([`poll_changed`](RaftLog::poll_changed) /
/// [`changed`](RaftLog::changed)) or [`wait_changed_blocking`](RaftLog::wait_changed_blocking).
///
/// Threads: one writer (writes, truncations, hard state, disk reads, in
/// submission order) and one syncer (fdatasync concurrently with the writer).
///
/// ```
/// use bytes::Bytes;
/// use dongting_store::{LogConfig, LogRecord, RaftLog};
///
/// let dir = tempfile::tempdir()?;
/// let mut log = RaftLog::open(dir.path(), LogConfig::default())?;
/// let batch: Vec<LogRecord> = (1..=3)
///     .map(|i| LogRecord { index: i, term: 1, kind: 0, payload: Bytes::from_static(b"x") })
///     .collect();
/// log.append(&batch)?; // returns at once; the writer thread does the IO
/// while log.poll_progress()?.synced_index < 3 {
///     log.wait_changed_blocking(std::time::Duration::from_millis(100));
/// }
/// assert_eq!(log.term_at(2), Some(1));
/// log.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RaftLog {
    cfg: LogConfig,
    group_dir: PathBuf,
    segs: VecDeque<SegMeta>,
    /// The newest segment must be replaced (not appended to) before the next
    /// write, because it was created with another torn-tail window.
    roll_needed: bool,
    term_runs: Vec<(u64, u64)>,
    first_index: u64,
    last_index: u64,
    cache: VecDeque<LogRecord>,
    cache_payload_bytes: u64,
    next_seq: u64,
    pending: VecDeque<Pending>,
    /// Entries of `pending` before this position are written.
    written_pos: usize,
    submitted_bytes: u64,
    written_bytes: u64,
    progress: Progress,
    durable_hard_state: Option<HardState>,
    delete_schedule: Vec<(Instant, u64)>,
    next_read_id: ReadId,
    reads_in_flight: usize,
    seen_generation: u64,
    shared: Arc<Shared>,
    tx: Option<Sender<Command>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("dir", &self.group_dir)
            .field("first_index", &self.first_index)
            .field("last_index", &self.last_index)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl RaftLog {
    /// Opens (creating if needed) the log in `group_dir/log`, recovers it and
    /// loads `group_dir/hard_state`. Blocking: reads every segment once and
    /// fsyncs the newest one; call it from a blocking context.
    ///
    /// Errors: [`StoreError::Corrupt`] when recovery finds damage it must not
    /// repair (the message names file, offset, index and what to do),
    /// [`StoreError::InvalidArgument`] for a bad config, IO errors.
    pub fn open(group_dir: &Path, cfg: LogConfig) -> Result<RaftLog> {
        cfg.validate()?;
        let fs = cfg.fs.clone();
        let dir = group_dir.join(LOG_DIR);
        fs.create_dir_all(&dir)
            .map_err(|e| StoreError::io("create dir", &dir, e))?;
        let hard_state = load_hard_state(fs.as_ref(), group_dir)?;
        let rec = recover_log(fs.as_ref(), &dir)?;
        let mut files: BTreeMap<u64, Arc<dyn StoreFile>> = BTreeMap::new();
        let mut segs = VecDeque::new();
        for s in rec.segments {
            files.insert(s.first_index, s.file);
            segs.push_back(SegMeta {
                first_index: s.first_index,
                window_bytes: s.window_bytes,
                offsets: s.offsets,
                end: s.end,
            });
        }
        let (first_index, last_index) = match (segs.front(), segs.back()) {
            (Some(f), Some(l)) => (f.first_index, l.first_index + l.offsets.len() as u64 - 1),
            _ => (1, 0),
        };
        let roll_needed = segs
            .back()
            .is_some_and(|s| u64::from(s.window_bytes) != cfg.max_unsynced_bytes);
        let current = segs.back().map(|s| s.first_index);
        tracing::info!(
            dir = %dir.display(),
            first_index,
            last_index,
            segments = segs.len(),
            torn_bytes = rec.torn_bytes,
            "log recovered"
        );
        let shared = Arc::new(Shared::new(cfg.notifier.clone(), 0));
        let sync = new_sync_shared(current.and_then(|c| files.get(&c).cloned()), 0);
        let io_cfg = IoConfig {
            sync_force: cfg.sync_force,
            sync_interval: Duration::from_millis(cfg.sync_interval_ms),
            window_bytes: cfg.max_unsynced_bytes,
            disk_full_retry: Duration::from_millis(cfg.disk_full_retry_ms),
            slow_fsync: Duration::from_millis(cfg.slow_fsync_warn_ms),
            group: cfg.group,
        };
        let writer = Writer {
            fs: fs.clone(),
            dir: dir.clone(),
            group_dir: group_dir.to_path_buf(),
            files,
            current,
            shared: shared.clone(),
            sync: sync.clone(),
            cfg: io_cfg.clone(),
        };
        let (tx, rx) = channel();
        let name = group_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spawn_err = |e| StoreError::io("spawn thread", &dir, e);
        let w = std::thread::Builder::new()
            .name(format!("log-writer-{name}"))
            .spawn(move || writer.run(rx))
            .map_err(spawn_err)?;
        let shared2 = shared.clone();
        let s = std::thread::Builder::new()
            .name(format!("log-syncer-{name}"))
            .spawn(move || run_syncer(sync, shared2, io_cfg))
            .map_err(spawn_err)?;
        Ok(RaftLog {
            group_dir: group_dir.to_path_buf(),
            segs,
            roll_needed,
            term_runs: rec.term_runs,
            first_index,
            last_index,
            cache: VecDeque::new(),
            cache_payload_bytes: 0,
            next_seq: 1,
            pending: VecDeque::new(),
            written_pos: 0,
            submitted_bytes: 0,
            written_bytes: 0,
            progress: Progress {
                written_index: last_index,
                synced_index: last_index,
            },
            durable_hard_state: hard_state,
            delete_schedule: Vec::new(),
            next_read_id: 1,
            reads_in_flight: 0,
            seen_generation: 0,
            shared,
            tx: Some(tx),
            threads: vec![w, s],
            cfg,
        })
    }

    /// The durations of this log's fsyncs (shared: keep the handle to read
    /// them while the log runs).
    pub fn fsync_stats(&self) -> std::sync::Arc<crate::fsync_stats::FsyncStats> {
        self.shared.fsync.clone()
    }

    /// Bytes of the log's segment files: what was handed to the writer,
    /// headers included; a segment leaves the count when its deletion is
    /// queued. O(segments) (a group has a handful), no IO.
    pub fn segment_bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.end).sum()
    }

    /// First index stored (`last_index() + 1` when the log is empty).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Last index appended (submitted; see [`Progress`] for what is written or synced).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Term of the last appended entry, 0 when the log is empty.
    pub fn last_term(&self) -> u64 {
        self.term_at(self.last_index).unwrap_or(0)
    }

    /// Term of the entry at `index`, or `None` if it is not stored. In memory;
    /// O(log t) for t term changes in the stored range.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index < self.first_index || index > self.last_index {
            return None;
        }
        let pos = self.term_runs.partition_point(|(start, _)| *start <= index);
        pos.checked_sub(1).map(|p| self.term_runs[p].1)
    }

    /// The hard state last known durable: loaded at open, then updated when a
    /// [`save_hard_state`](RaftLog::save_hard_state) completes.
    pub fn durable_hard_state(&self) -> Option<&HardState> {
        self.durable_hard_state.as_ref()
    }

    /// The group directory this log was opened in.
    pub fn group_dir(&self) -> &Path {
        &self.group_dir
    }

    fn check_usable(&self) -> Result<()> {
        if self.tx.is_none() {
            return Err(StoreError::Closed);
        }
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(StoreError::Stopped {
                cause: self.shared.fatal().unwrap_or_else(|| "log stopped".into()),
            });
        }
        Ok(())
    }

    fn send(&self, cmd: Command) -> Result<()> {
        match &self.tx {
            Some(tx) => tx.send(cmd).map_err(|_| StoreError::Stopped {
                cause: "writer thread exited".into(),
            }),
            None => Err(StoreError::Closed),
        }
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Writes and syncs everything submitted, stops the IO threads and waits
    /// for them. Blocking. Returns the sticky error if the log had stopped.
    pub fn close(mut self) -> Result<()> {
        let r = if self.shared.stopped.load(Ordering::SeqCst) {
            self.poll_progress().map(|_| ())
        } else {
            self.sync_blocking().map(|_| ())
        };
        self.shutdown_threads();
        r
    }

    fn shutdown_threads(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Command::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RaftLog {
    /// Stops the IO threads after they finish queued work (a final sync
    /// included) and waits for them. Prefer [`RaftLog::close`], which also
    /// reports errors.
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}
