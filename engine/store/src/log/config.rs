//! Settings of one group's log and their validation.

use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::fs::{FileSystem, OsFs};
use crate::io::Notifier;
use crate::record::MAX_PAYLOAD_BYTES;

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
    /// An fsync of the log at least this slow is logged at WARN (default
    /// 1000 ms, [`SLOW_FSYNC`](crate::SLOW_FSYNC)).
    pub slow_fsync_warn_ms: u64,
    /// The group this log belongs to, named in its log lines (default 0).
    pub group: u32,
    /// Called on an IO thread whenever progress is published (see [`RaftLog::poll_progress`](super::RaftLog::poll_progress)).
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
            slow_fsync_warn_ms: crate::SLOW_FSYNC.as_millis() as u64,
            group: 0,
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
    pub(super) fn validate(&self) -> Result<()> {
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
