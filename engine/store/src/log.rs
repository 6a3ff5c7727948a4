//! The raft log of one group: the owner-side handle with the in-memory index and
//! the cache of recent entries, driving the IO threads in `io`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Sender, channel};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::error::{Result, StoreError};
use crate::fs::{FileSystem, OsFs, StoreFile};
use crate::hard_state::{HardState, load_hard_state};
use crate::io::{
    Command, IoConfig, Notifier, ReadId, Shared, Span, Writer, lock, new_sync_shared, run_syncer,
};
use crate::record::{LogRecord, MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES, encode_record};
use crate::segment::{SEGMENT_HEADER_BYTES, recover_log};

/// Name of the directory holding segment files inside a group directory.
pub const LOG_DIR: &str = "log";

/// Settings of one group's log. `Default` gives the values documented per field.
#[derive(Clone)]
pub struct LogConfig {
    /// `syncForce`. On (default): the syncer fdatasyncs as soon as a write
    /// completes, so `synced_index` follows `written_index` within one fsync.
    /// Off: writes are synced every `sync_interval_ms` (or sooner when the
    /// unsynced bytes reach half of `max_unsynced_bytes`); the runtime may
    /// acknowledge after `written_index`.
    pub sync_force: bool,
    /// With `sync_force` off, the longest a completed write stays unsynced (default 50 ms).
    pub sync_interval_ms: u64,
    /// Nominal segment size; a new segment starts when the next batch would
    /// cross it (default 64 MiB, at most 1 GiB). A single record larger than
    /// this gets a segment of its own.
    pub segment_bytes: u64,
    /// The torn-tail window: at most this many bytes are ever written past the
    /// last completed fsync; the writer waits for the syncer otherwise. Recovery
    /// treats damage only within this many bytes of the newest segment's end as
    /// a torn tail (default 32 MiB; at least `max_entry_bytes` plus 28).
    pub max_unsynced_bytes: u64,
    /// Largest payload accepted by `append` (default 16 MiB).
    pub max_entry_bytes: usize,
    /// Backpressure: bytes submitted but not yet written (default 64 MiB).
    pub max_pending_bytes: u64,
    /// Backpressure: append calls submitted but not yet written (default 4096).
    pub max_pending_batches: usize,
    /// Disk reads in flight at once (default 64).
    pub max_pending_reads: usize,
    /// Memory budget of the cache of recent entries (default 64 MiB of payload).
    pub cache_bytes: u64,
    /// `autoDeleteLogDelaySeconds`: how long after `compact_prefix` the segments
    /// behind the snapshot are deleted (default 60 s).
    pub auto_delete_log_delay_seconds: u64,
    /// How long the writer waits before retrying a write that hit a full disk (default 500 ms).
    pub disk_full_retry_ms: u64,
    /// Called on an IO thread whenever progress is published (see [`RaftLog::poll_progress`]).
    pub notifier: Option<Notifier>,
    /// The file layer; [`OsFs`] unless a test injects faults.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            sync_force: true,
            sync_interval_ms: 50,
            segment_bytes: 64 << 20,
            max_unsynced_bytes: 32 << 20,
            max_entry_bytes: 16 << 20,
            max_pending_bytes: 64 << 20,
            max_pending_batches: 4096,
            max_pending_reads: 64,
            cache_bytes: 64 << 20,
            auto_delete_log_delay_seconds: 60,
            disk_full_retry_ms: 500,
            notifier: None,
            fs: Arc::new(OsFs),
        }
    }
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("sync_force", &self.sync_force)
            .field("sync_interval_ms", &self.sync_interval_ms)
            .field("segment_bytes", &self.segment_bytes)
            .field("max_unsynced_bytes", &self.max_unsynced_bytes)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field("max_pending_batches", &self.max_pending_batches)
            .field("cache_bytes", &self.cache_bytes)
            .field(
                "auto_delete_log_delay_seconds",
                &self.auto_delete_log_delay_seconds,
            )
            .finish_non_exhaustive()
    }
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(StoreError::InvalidArgument(m));
        if self.segment_bytes < 4096 || self.segment_bytes > (1 << 30) {
            return bad(format!(
                "segment_bytes {} outside 4096..=1 GiB",
                self.segment_bytes
            ));
        }
        if self.max_entry_bytes > MAX_PAYLOAD_BYTES {
            return bad(format!(
                "max_entry_bytes {} above {MAX_PAYLOAD_BYTES}",
                self.max_entry_bytes
            ));
        }
        let min_window = self.max_entry_bytes as u64 + 28;
        if self.max_unsynced_bytes < min_window || self.max_unsynced_bytes > u32::MAX as u64 {
            return bad(format!(
                "max_unsynced_bytes {} must be between max_entry_bytes + 28 ({min_window}) and 4 GiB",
                self.max_unsynced_bytes
            ));
        }
        if self.max_pending_batches == 0
            || self.max_pending_bytes == 0
            || self.max_pending_reads == 0
        {
            return bad("pending limits must be positive".into());
        }
        Ok(())
    }
}

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

    /// Bytes and batches submitted but not yet written.
    pub fn pending(&self) -> (u64, usize) {
        (
            self.submitted_bytes - self.written_bytes,
            self.pending.len() - self.written_pos,
        )
    }

    /// Appends a batch of consecutive entries after `last_index()`; returns at
    /// once. The batch is encoded here (one CRC32C pass and one copy) and
    /// becomes one write on the writer thread (more only when it crosses a
    /// segment or exceeds the torn-tail window); with `sync_force` the syncer's
    /// next fdatasync covers it together with every other completed write.
    /// Entries are also kept in the cache for replication.
    ///
    /// Backpressure: when more than `max_pending_bytes` or `max_pending_batches`
    /// are waiting to be written, returns [`StoreError::Backpressure`] and queues
    /// nothing; retry after [`poll_progress`](RaftLog::poll_progress) shows
    /// progress. While the disk is full, returns [`StoreError::DiskFull`].
    pub fn append(&mut self, entries: &[LogRecord]) -> Result<()> {
        self.write_records(entries)?;
        self.cache_records(entries.iter().cloned());
        Ok(())
    }

    /// [`RaftLog::append`] taking the records: on success `entries` is left
    /// empty, its records moved into the cache of recent entries (no
    /// reference-count round trip per payload); on an error it is unchanged,
    /// to be offered again (after `Backpressure`, say).
    pub fn append_owned(&mut self, entries: &mut Vec<LogRecord>) -> Result<()> {
        self.write_records(entries)?;
        self.cache_records(entries.drain(..));
        Ok(())
    }

    /// Checks a batch and hands its encoding to the writer.
    fn write_records(&mut self, entries: &[LogRecord]) -> Result<()> {
        self.check_usable()?;
        if self.shared.disk_full.load(Ordering::SeqCst) {
            return Err(StoreError::DiskFull {
                path: self.group_dir.join(LOG_DIR),
            });
        }
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index != self.last_index + 1 {
            return Err(StoreError::InvalidArgument(format!(
                "append at index {} but the log ends at {}",
                first.index, self.last_index
            )));
        }
        let mut prev_term = self.last_term();
        let mut batch_bytes = 0u64;
        for (i, e) in entries.iter().enumerate() {
            if e.index != first.index + i as u64 {
                return Err(StoreError::InvalidArgument(format!(
                    "batch not consecutive at index {}",
                    e.index
                )));
            }
            if e.term < prev_term {
                return Err(StoreError::InvalidArgument(format!(
                    "term {} at index {} is below the previous term {prev_term}",
                    e.term, e.index
                )));
            }
            if e.payload.len() > self.cfg.max_entry_bytes {
                return Err(StoreError::InvalidArgument(format!(
                    "entry {} has {} bytes, above max_entry_bytes {}",
                    e.index,
                    e.payload.len(),
                    self.cfg.max_entry_bytes
                )));
            }
            prev_term = e.term;
            batch_bytes += e.encoded_len() as u64;
        }
        let (pending_bytes, pending_batches) = self.pending();
        if pending_batches > 0
            && (pending_batches >= self.cfg.max_pending_batches
                || pending_bytes + batch_bytes > self.cfg.max_pending_bytes)
        {
            return Err(StoreError::Backpressure {
                pending_batches,
                pending_bytes,
            });
        }

        let window = self.cfg.max_unsynced_bytes;
        let mut buf = BytesMut::with_capacity((batch_bytes as usize).min(window as usize));
        // (segment, create, offset) of the chunk being built
        let mut chunk: Option<(u64, Option<u32>, u64)> = None;
        for e in entries {
            let len = e.encoded_len() as u64;
            let need_new = match self.segs.back() {
                None => true,
                Some(s) => {
                    self.roll_needed
                        || (!s.offsets.is_empty() && s.end + len > self.cfg.segment_bytes)
                }
            };
            if (need_new || (!buf.is_empty() && buf.len() as u64 + len > window))
                && let Some((seg, create, offset)) = chunk.take()
            {
                self.submit_chunk(seg, create, offset, &mut buf)?;
            }
            if need_new {
                self.roll_needed = false;
                let replace = self.segs.back().is_some_and(|s| s.offsets.is_empty());
                if replace {
                    self.segs.pop_back();
                }
                self.segs.push_back(SegMeta {
                    first_index: e.index,
                    window_bytes: window as u32,
                    offsets: Vec::new(),
                    end: SEGMENT_HEADER_BYTES as u64,
                });
                chunk = Some((e.index, Some(window as u32), SEGMENT_HEADER_BYTES as u64));
            }
            let Some(seg) = self.segs.back_mut() else {
                return Err(StoreError::Stopped {
                    cause: "internal: no segment after rollover".into(),
                });
            };
            if chunk.is_none() {
                chunk = Some((seg.first_index, None, seg.end));
            }
            seg.offsets.push(seg.end as u32);
            seg.end += len;
            encode_record(e, &mut buf);
            if self.term_runs.last().is_none_or(|(_, t)| *t != e.term) {
                self.term_runs.push((e.index, e.term));
            }
            self.last_index = e.index;
        }
        if let Some((seg, create, offset)) = chunk.take() {
            self.submit_chunk(seg, create, offset, &mut buf)?;
        }
        Ok(())
    }

    /// Adds just-written records to the cache of recent entries and evicts the
    /// oldest past the budget.
    fn cache_records(&mut self, records: impl Iterator<Item = LogRecord>) {
        for r in records {
            self.cache_payload_bytes += r.payload.len() as u64;
            self.cache.push_back(r);
        }
        while self.cache_payload_bytes > self.cfg.cache_bytes && self.cache.len() > 1 {
            if let Some(r) = self.cache.pop_front() {
                self.cache_payload_bytes -= r.payload.len() as u64;
            }
        }
    }

    fn submit_chunk(
        &mut self,
        segment: u64,
        create: Option<u32>,
        offset: u64,
        buf: &mut BytesMut,
    ) -> Result<()> {
        let data = buf.split().freeze();
        let seq = self.take_seq();
        self.submitted_bytes += data.len() as u64;
        self.pending.push_back(Pending {
            seq,
            bytes_after: self.submitted_bytes,
            kind: PendingKind::Log {
                last_index: self.last_index,
            },
        });
        self.send(Command::Append {
            seq,
            segment,
            create,
            offset,
            data,
        })
    }

    /// Removes every entry from `from_index` on (a follower whose log conflicts
    /// with the leader's). Returns at once; the writer syncs pending writes,
    /// deletes later segments, cuts the file and fsyncs before anything after
    /// this call is written. `written_index`/`synced_index` drop to at most
    /// `from_index - 1` immediately.
    pub fn truncate_suffix(&mut self, from_index: u64) -> Result<()> {
        self.check_usable()?;
        if from_index > self.last_index {
            return Ok(());
        }
        if from_index < self.first_index || from_index == 0 {
            return Err(StoreError::InvalidArgument(format!(
                "cannot truncate from {from_index}: entries before {} are compacted",
                self.first_index
            )));
        }
        let mut remove = Vec::new();
        while self.segs.len() > 1 && self.segs.back().is_some_and(|s| s.first_index > from_index) {
            if let Some(s) = self.segs.pop_back() {
                remove.push(s.first_index);
            }
        }
        let Some(seg) = self.segs.back_mut() else {
            return Err(StoreError::Stopped {
                cause: "internal: no segment to truncate".into(),
            });
        };
        let keep = (from_index.saturating_sub(seg.first_index)) as usize;
        let cut = if keep < seg.offsets.len() {
            u64::from(seg.offsets[keep])
        } else {
            seg.end
        };
        seg.offsets.truncate(keep);
        seg.end = cut;
        self.roll_needed = u64::from(seg.window_bytes) != self.cfg.max_unsynced_bytes;
        let truncate = Some((seg.first_index, cut));
        self.last_index = from_index - 1;
        while self.cache.back().is_some_and(|r| r.index >= from_index) {
            if let Some(r) = self.cache.pop_back() {
                self.cache_payload_bytes -= r.payload.len() as u64;
            }
        }
        while self.term_runs.last().is_some_and(|(s, _)| *s >= from_index) {
            self.term_runs.pop();
        }
        for p in self.pending.iter_mut() {
            if let PendingKind::Log { last_index } = &mut p.kind {
                *last_index = (*last_index).min(from_index - 1);
            }
        }
        self.progress.written_index = self.progress.written_index.min(from_index - 1);
        self.progress.synced_index = self.progress.synced_index.min(from_index - 1);
        let seq = self.take_seq();
        self.pending.push_back(Pending {
            seq,
            bytes_after: self.submitted_bytes,
            kind: PendingKind::Log {
                last_index: self.last_index,
            },
        });
        self.send(Command::Truncate {
            seq,
            remove,
            truncate,
            create: None,
        })
    }

    /// Discards the whole log and makes `next_index` the index of the next
    /// append (after installing a snapshot that ends at `next_index - 1`).
    /// Returns at once; durable when `synced_index` is reported (it becomes
    /// `next_index - 1`). If the process dies midway, the log may reopen with a
    /// prefix of the old entries or empty: the runtime compares it with its
    /// snapshot and calls `reset` again.
    pub fn reset(&mut self, next_index: u64) -> Result<()> {
        self.check_usable()?;
        if next_index == 0 {
            return Err(StoreError::InvalidArgument(
                "next_index must be at least 1".into(),
            ));
        }
        let remove: Vec<u64> = self.segs.iter().rev().map(|s| s.first_index).collect();
        self.segs.clear();
        self.segs.push_back(SegMeta {
            first_index: next_index,
            window_bytes: self.cfg.max_unsynced_bytes as u32,
            offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES as u64,
        });
        self.roll_needed = false;
        self.first_index = next_index;
        self.last_index = next_index - 1;
        self.term_runs.clear();
        self.cache.clear();
        self.cache_payload_bytes = 0;
        self.delete_schedule.clear();
        for p in self.pending.iter_mut() {
            if let PendingKind::Log { last_index } = &mut p.kind {
                *last_index = (*last_index).min(next_index - 1);
            }
        }
        self.progress.written_index = self.progress.written_index.min(next_index - 1);
        self.progress.synced_index = self.progress.synced_index.min(next_index - 1);
        let seq = self.take_seq();
        self.pending.push_back(Pending {
            seq,
            bytes_after: self.submitted_bytes,
            kind: PendingKind::Log {
                last_index: next_index - 1,
            },
        });
        self.send(Command::Truncate {
            seq,
            remove,
            truncate: None,
            create: Some((next_index, self.cfg.max_unsynced_bytes as u32)),
        })
    }

    /// Declares every entry up to `upto_index` covered by a snapshot. Whole
    /// segments whose entries are all `<= upto_index` are deleted
    /// `auto_delete_log_delay_seconds` after `now`, when [`tick`](RaftLog::tick)
    /// runs at or after that time; until then they stay readable. The newest
    /// segment is never deleted. Costs no IO now.
    pub fn compact_prefix(&mut self, upto_index: u64, now: Instant) -> Result<()> {
        self.check_usable()?;
        let due = now + Duration::from_secs(self.cfg.auto_delete_log_delay_seconds);
        self.delete_schedule.push((due, upto_index));
        self.tick(now)
    }

    /// Runs due segment deletions scheduled by `compact_prefix`. Call it
    /// periodically (e.g. on every raft tick); cheap when nothing is due.
    pub fn tick(&mut self, now: Instant) -> Result<()> {
        let mut upto = None;
        self.delete_schedule.retain(|(due, i)| {
            if *due <= now {
                upto = Some(upto.unwrap_or(0).max(*i));
                false
            } else {
                true
            }
        });
        let Some(upto) = upto else { return Ok(()) };
        let mut remove = Vec::new();
        while self.segs.len() > 1
            && self
                .segs
                .front()
                .is_some_and(|s| !s.offsets.is_empty() && s.last_index() <= upto)
        {
            if let Some(s) = self.segs.pop_front() {
                remove.push(s.first_index);
            }
        }
        if remove.is_empty() {
            return Ok(());
        }
        if let Some(f) = self.segs.front() {
            self.first_index = f.first_index;
        }
        while self
            .cache
            .front()
            .is_some_and(|r| r.index < self.first_index)
        {
            if let Some(r) = self.cache.pop_front() {
                self.cache_payload_bytes -= r.payload.len() as u64;
            }
        }
        let keep_from = self
            .term_runs
            .partition_point(|(s, _)| *s <= self.first_index)
            .saturating_sub(1);
        self.term_runs.drain(..keep_from);
        if let Some(r) = self.term_runs.first_mut() {
            r.0 = r.0.max(self.first_index);
        }
        tracing::debug!(
            first_index = self.first_index,
            segments = remove.len(),
            "deleting log segments behind snapshot"
        );
        self.send(Command::RemovePrefix { remove })
    }

    /// Entries `lo..hi` if all are in the cache (at most `max_bytes` of payload,
    /// but at least one entry). Never touches the disk.
    pub fn cached_entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Option<Vec<LogRecord>> {
        let first = self.cache.front()?.index;
        if lo < first || hi > self.last_index + 1 || lo >= hi {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for r in self
            .cache
            .range((lo - first) as usize..(hi - first) as usize)
        {
            bytes += r.payload.len() as u64;
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(r.clone());
        }
        Some(out)
    }

    /// Reads entries `lo..hi` (at most `max_bytes` of payload, at least one
    /// entry): from the cache when possible, else by a disk read on the writer
    /// thread whose result arrives through
    /// [`take_read_results`](RaftLog::take_read_results). Records read from
    /// disk are CRC-checked; damage is reported as [`StoreError::Corrupt`].
    pub fn read(&mut self, lo: u64, hi: u64, max_bytes: u64) -> Result<ReadOutcome> {
        self.check_usable()?;
        if lo < self.first_index || hi > self.last_index + 1 || lo >= hi {
            return Err(StoreError::Unavailable {
                index: if lo < self.first_index {
                    lo
                } else {
                    hi.saturating_sub(1)
                },
                first: self.first_index,
                last: self.last_index,
            });
        }
        if let Some(v) = self.cached_entries(lo, hi, max_bytes) {
            return Ok(ReadOutcome::Ready(v));
        }
        if self.reads_in_flight >= self.cfg.max_pending_reads {
            let (pending_bytes, pending_batches) = self.pending();
            return Err(StoreError::Backpressure {
                pending_batches,
                pending_bytes,
            });
        }
        let spans = self.spans(lo, hi, max_bytes);
        let id = self.next_read_id;
        self.next_read_id += 1;
        self.reads_in_flight += 1;
        self.send(Command::Read { id, spans })?;
        Ok(ReadOutcome::Pending(id))
    }

    fn spans(&self, lo: u64, hi: u64, max_bytes: u64) -> Vec<Span> {
        let mut spans = Vec::new();
        let mut bytes = 0u64;
        let start_seg = self
            .segs
            .partition_point(|s| s.first_index <= lo)
            .saturating_sub(1);
        let mut index = lo;
        'outer: for s in self.segs.iter().skip(start_seg) {
            if s.offsets.is_empty() || index > s.last_index() {
                continue;
            }
            let first_pos = (index - s.first_index) as usize;
            let mut pos = first_pos;
            while pos < s.offsets.len() && index < hi {
                // `max_bytes` counts payload, as for cached reads.
                let size =
                    s.record_end(pos) - u64::from(s.offsets[pos]) - RECORD_HEADER_BYTES as u64;
                if (index > lo) && bytes + size > max_bytes {
                    if pos > first_pos {
                        spans.push(self.span(s, first_pos, pos));
                    }
                    break 'outer;
                }
                bytes += size;
                pos += 1;
                index += 1;
            }
            if pos > first_pos {
                spans.push(self.span(s, first_pos, pos));
            }
            if index >= hi {
                break;
            }
        }
        spans
    }

    fn span(&self, s: &SegMeta, from: usize, to: usize) -> Span {
        Span {
            segment: s.first_index,
            start: u64::from(s.offsets[from]),
            end: s.record_end(to - 1),
            first: s.first_index + from as u64,
            count: to - from,
        }
    }

    /// Results of disk reads completed since the last call.
    pub fn take_read_results(&mut self) -> Vec<(ReadId, Result<Vec<LogRecord>>)> {
        let v: Vec<_> = std::mem::take(&mut *lock(&self.shared.reads_done));
        self.reads_in_flight = self.reads_in_flight.saturating_sub(v.len());
        v
    }

    /// Queues an atomic replacement of the hard state (see
    /// [`save_hard_state`](crate::save_hard_state)), ordered after every write
    /// submitted before it. Durable once [`durable_hard_state`](RaftLog::durable_hard_state)
    /// returns it (after `poll_progress`). Costs two or three fsyncs on the
    /// writer thread: save it when term or vote change, not on every commit.
    pub fn save_hard_state(&mut self, state: HardState) -> Result<()> {
        self.check_usable()?;
        crate::hard_state::encode(&state)?;
        let seq = self.take_seq();
        self.pending.push_back(Pending {
            seq,
            bytes_after: self.submitted_bytes,
            kind: PendingKind::HardState(state.clone()),
        });
        self.send(Command::SaveHardState { seq, state })
    }

    /// Asks the syncer to fdatasync now (useful with `sync_force` off before a
    /// clean handover). Returns at once.
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        self.send(Command::Flush)
    }

    /// Absorbs what the IO threads published and returns the current
    /// watermarks. Cheap (two atomic loads, a walk over newly completed
    /// batches). Returns [`StoreError::Stopped`] after a fatal IO error.
    pub fn poll_progress(&mut self) -> Result<Progress> {
        let written = self.shared.written_seq.load(Ordering::SeqCst);
        let synced = self.shared.synced_seq.load(Ordering::SeqCst);
        while self.written_pos < self.pending.len() && self.pending[self.written_pos].seq <= written
        {
            let p = &self.pending[self.written_pos];
            self.written_bytes = p.bytes_after;
            if let PendingKind::Log { last_index } = p.kind {
                self.progress.written_index = last_index;
            }
            self.written_pos += 1;
        }
        while self
            .pending
            .front()
            .is_some_and(|p| p.seq <= synced && self.written_pos > 0)
        {
            if let Some(p) = self.pending.pop_front() {
                self.written_pos -= 1;
                match p.kind {
                    PendingKind::Log { last_index } => self.progress.synced_index = last_index,
                    PendingKind::HardState(hs) => self.durable_hard_state = Some(hs),
                }
            }
        }
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(StoreError::Stopped {
                cause: self.shared.fatal().unwrap_or_else(|| "log stopped".into()),
            });
        }
        Ok(self.progress)
    }

    /// Whether the disk is full right now (writes are refused until it is not).
    pub fn is_disk_full(&self) -> bool {
        self.shared.disk_full.load(Ordering::SeqCst)
    }

    /// `Ready` when the IO threads published something since the last `Ready`
    /// (then call `poll_progress` / `take_read_results`); otherwise stores the
    /// waker and returns `Pending`. Works with any executor.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let g = *lock(&self.shared.generation);
        if g != self.seen_generation {
            self.seen_generation = g;
            return Poll::Ready(());
        }
        *lock(&self.shared.waker) = Some(cx.waker().clone());
        let g = *lock(&self.shared.generation);
        if g != self.seen_generation {
            self.seen_generation = g;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// A future that completes when the IO threads publish progress.
    pub fn changed(&mut self) -> Changed<'_> {
        Changed { log: self }
    }

    /// Blocks the calling thread until progress is published or `timeout`
    /// passes. For blocking callers (tests, tools, replay at startup); never
    /// call it on an async runtime's worker.
    pub fn wait_changed_blocking(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.shared.generation);
        while *g == self.seen_generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            g = self
                .shared
                .progress_cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        self.seen_generation = *g;
    }

    /// Reads `lo..hi` and waits for the result. Blocking (for replay at
    /// startup or tools; not on an async worker).
    pub fn read_blocking(&mut self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<LogRecord>> {
        match self.read(lo, hi, max_bytes)? {
            ReadOutcome::Ready(v) => Ok(v),
            ReadOutcome::Pending(id) => loop {
                let mut found = None;
                {
                    let mut done = lock(&self.shared.reads_done);
                    if let Some(pos) = done.iter().position(|(i, _)| *i == id) {
                        found = Some(done.remove(pos).1);
                    }
                }
                if let Some(r) = found {
                    self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
                    return r;
                }
                self.check_usable()?;
                self.wait_changed_blocking(Duration::from_millis(100));
            },
        }
    }

    /// Waits until everything submitted is synced. Blocking.
    pub fn sync_blocking(&mut self) -> Result<Progress> {
        self.flush()?;
        loop {
            let p = self.poll_progress()?;
            if self.pending.is_empty() {
                return Ok(p);
            }
            if self.is_disk_full() {
                return Err(StoreError::DiskFull {
                    path: self.group_dir.join(LOG_DIR),
                });
            }
            self.wait_changed_blocking(Duration::from_millis(100));
        }
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

/// Future returned by [`RaftLog::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    log: &'a mut RaftLog,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.log.poll_changed(cx)
    }
}
