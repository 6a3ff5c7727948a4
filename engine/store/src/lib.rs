//! Durable storage for raft groups: the log, the hard state and snapshots.
//!
//! The store knows nothing about raft messages; it stores generic records
//! ([`LogRecord`]: index, term, kind, payload) and promises:
//!
//! - **Log** ([`RaftLog`]): segment files of CRC32C-checked records, an
//!   in-memory index (O(1) position lookup, term lookup by term runs) and a
//!   cache of recent entries so replication to a healthy follower never reads
//!   the disk. Appends return at once; a writer thread turns each batch into
//!   one write and a syncer thread's fdatasync covers every write completed
//!   before it (group commit). Progress is two watermarks: `written_index`
//!   (survives a process crash) and `synced_index` (survives power loss).
//!   Bounded queues give backpressure instead of unbounded memory.
//! - **Hard state** ([`save_hard_state`], [`load_hard_state`]): replaced
//!   atomically (temp file, fsync, rename, directory fsync), CRC on load.
//! - **Snapshots** ([`SnapshotStore`]): streamed writer, verifying reader, raw
//!   reader for sending to followers, installer with atomic switch, retention;
//!   [`SnapshotPolicy`] says when one is due.
//! - **Recovery**: a torn tail of the newest segment is cut; damage anywhere
//!   else refuses to open with [`StoreError::Corrupt`] naming file, offset and
//!   index. An fsync error stops the log for good ([`StoreError::Stopped`]);
//!   a full disk refuses writes and resumes by itself once space returns.
//!
//! On-disk formats, durability promises and operator actions are documented in
//! `docs/storage.md`.
//!
//! A group directory holds `log/` (segments), `hard_state` and, by convention,
//! `snapshot/` (open it with [`SnapshotStore::open`]).

mod error;
pub mod fs;
mod fsync_stats;
mod hard_state;
mod io;
mod log;
mod policy;
mod record;
mod segment;
mod snapshot;
pub mod testing;

pub use error::{Result, StoreError};
pub use fsync_stats::{FSYNC_BUCKETS_SECONDS, FsyncSnapshot, FsyncStats, SLOW_FSYNC};
pub use hard_state::{HARD_STATE_FILE, HardState, load_hard_state, save_hard_state};
pub use io::{Notifier, ReadId};
pub use log::{Changed, LOG_DIR, LogConfig, Progress, RaftLog, ReadOutcome};
pub use policy::{SnapshotPolicy, SnapshotReason};
pub use record::{LogRecord, MAX_PAYLOAD_BYTES, RECORD_HEADER_BYTES, RecordError, decode_record};
pub use snapshot::{
    MAX_CHUNK_BYTES, SnapshotInfo, SnapshotInstaller, SnapshotMeta, SnapshotReader, SnapshotStore,
    SnapshotWriter, WRITER_CHUNK_BYTES, open_snapshot_at,
};

/// Name of the snapshot directory inside a group directory, by convention.
pub const SNAPSHOT_DIR: &str = "snapshot";
