//! Every bound the state machine enforces, in one struct.
//!
//! All replicas of a group must use the same limits: a limit decides whether a
//! command fails, so replicas with different limits would diverge.

/// The default longest TTL, lock lease or lock wait in milliseconds (30 days);
/// clients refuse longer ones before sending them.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// The limits of one DtKV state machine. Units are in the field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key in bytes (default 8 KiB, as the original).
    pub max_key_bytes: usize,
    /// Largest value in bytes (default 1 MiB, as the original).
    pub max_value_bytes: usize,
    /// Most keys in one batch command or batch read (default 10,000).
    pub max_batch_keys: usize,
    /// Longest TTL, lock lease or lock wait in milliseconds (default 30 days).
    pub max_ttl_ms: u64,
    /// Most client sessions kept for deduplication (default 100,000); past it the
    /// least recently active session is dropped.
    pub max_sessions: usize,
    /// A session with no write for this long, by log time, is dropped (default 30 min).
    pub session_ttl_ms: u64,
    /// Most results kept per session for retries (default 4,096); past it the
    /// lowest sequence number's result is dropped.
    pub max_results_per_session: usize,
    /// Most waiters queued on one lock (default 10,000).
    pub max_lock_waiters: usize,
    /// Most watch events kept in the in-memory history (default 100,000).
    pub max_history_events: usize,
    /// Most key and value bytes referenced by the event history (default 64 MiB).
    pub max_history_bytes: usize,
    /// Target size of one snapshot chunk in bytes (default 1 MiB; a chunk holds at
    /// least one node, so a node larger than this makes a larger chunk).
    pub snapshot_chunk_bytes: usize,
    /// Most key and value bytes in one list answer (default 4 MiB, under the
    /// 5 MiB frame); a page stops before it, an unpaged list past it fails.
    pub max_read_bytes: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 8 * 1024,
            max_value_bytes: 1024 * 1024,
            max_batch_keys: 10_000,
            max_ttl_ms: MAX_TTL_MS,
            max_sessions: 100_000,
            session_ttl_ms: 30 * 60 * 1000,
            max_results_per_session: 4096,
            max_lock_waiters: 10_000,
            max_history_events: 100_000,
            max_history_bytes: 64 * 1024 * 1024,
            snapshot_chunk_bytes: 1024 * 1024,
            max_read_bytes: 4 * 1024 * 1024,
        }
    }
}
