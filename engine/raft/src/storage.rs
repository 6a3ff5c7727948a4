//! The storage abstraction and an in-memory implementation.
//!
//! The core keeps entries it has not yet seen persisted (plus a bounded cache of
//! recent ones) in memory. Everything older is read back through [`Storage`].
//! The application writes to its storage itself, from [`crate::Ready`], and then
//! reports what it persisted through [`crate::RawNode::advance`].

use bytes::Bytes;

use crate::error::StorageError;
use crate::membership::Membership;
use crate::types::{Entry, HardState, LogId, Snapshot, SnapshotMeta};

/// What a node needs from storage at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftState {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Last persisted configuration (persisted with the hard state).
    pub membership: Membership,
}

/// Read access to the durable log, hard state and latest snapshot.
///
/// Calls are synchronous and made on the thread that drives the node, so an
/// on-disk implementation should answer recent entries from its own cache.
pub trait Storage {
    /// Hard state and membership to restart from.
    fn initial_state(&self) -> Result<RaftState, StorageError>;
    /// Index and term of the entry just before the first stored entry (the
    /// snapshot or compaction point; `(0, 0)` for an empty log).
    fn log_start(&self) -> LogId;
    /// Index of the last stored entry (`log_start().index` when empty).
    fn last_index(&self) -> u64;
    /// Term of the entry at `index`, for `log_start().index <= index <= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// Append entries `[low, high)` to `out`, stopping once `max_bytes` is reached
    /// (at least one entry is returned when `low < high`).
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError>;
    /// The latest snapshot, to send to a follower that is behind the log start.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// An in-memory [`Storage`] used by tests, the simulator and the benchmark. It
/// also shows what an on-disk implementation must do with a [`crate::Ready`].
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    hard_state: HardState,
    membership: Membership,
    snapshot: Option<Snapshot>,
    start: LogId,
    entries: Vec<Entry>,
}

impl MemStorage {
    /// Empty storage bootstrapped with `membership`.
    pub fn new(membership: Membership) -> MemStorage {
        MemStorage {
            membership,
            ..MemStorage::default()
        }
    }

    /// Persist the durable parts of a ready in the required order: snapshot,
    /// entries (truncating any conflicting suffix), hard state and membership.
    pub fn persist_ready(&mut self, rd: &crate::Ready) -> Result<(), StorageError> {
        if let Some(s) = &rd.snapshot {
            self.apply_snapshot(s.clone());
        }
        self.append(&rd.entries)?;
        if let Some(hs) = rd.hard_state {
            self.hard_state = hs;
        }
        if let Some(m) = &rd.membership {
            self.membership = m.clone();
        }
        Ok(())
    }

    /// Append entries, first removing every stored entry at or after
    /// `entries[0].index`. The first index must be at most `last_index() + 1` and
    /// after the log start.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.start.index {
            return Err(StorageError::Compacted(first.index));
        }
        if first.index > self.last_index() + 1 {
            return Err(StorageError::Unavailable(first.index));
        }
        let keep = (first.index - self.start.index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Replace the whole log with a snapshot received from a leader.
    pub fn apply_snapshot(&mut self, snap: Snapshot) {
        self.start = LogId {
            index: snap.meta.index,
            term: snap.meta.term,
        };
        self.entries.clear();
        self.membership = snap.meta.membership.clone();
        self.hard_state.commit = self.hard_state.commit.max(snap.meta.index);
        self.snapshot = Some(snap);
    }

    /// Record a snapshot the local state machine produced. `meta` usually comes
    /// from [`crate::RawNode::snapshot_meta`].
    pub fn create_snapshot(&mut self, meta: SnapshotMeta, data: Bytes) -> Result<(), StorageError> {
        if meta.index > self.last_index() {
            return Err(StorageError::Unavailable(meta.index));
        }
        if meta.index < self.start.index {
            return Err(StorageError::Compacted(meta.index));
        }
        self.snapshot = Some(Snapshot { meta, data });
        Ok(())
    }

    /// Drop entries up to and including `index`, which must be covered by the
    /// latest snapshot.
    pub fn compact(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.start.index {
            return Ok(());
        }
        let snap_index = self.snapshot.as_ref().map_or(0, |s| s.meta.index);
        if index > snap_index {
            return Err(StorageError::Other(format!(
                "cannot compact to {index}: latest snapshot is at {snap_index}"
            )));
        }
        let term = self.term(index)?;
        let drop = (index - self.start.index) as usize;
        self.entries.drain(..drop);
        self.start = LogId { index, term };
        Ok(())
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Entries currently stored (after the log start).
    pub fn stored_entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<RaftState, StorageError> {
        Ok(RaftState {
            hard_state: self.hard_state,
            membership: self.membership.clone(),
        })
    }

    fn log_start(&self) -> LogId {
        self.start
    }

    fn last_index(&self) -> u64 {
        self.start.index + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index < self.start.index {
            return Err(StorageError::Compacted(index));
        }
        if index == self.start.index {
            return Ok(self.start.term);
        }
        self.entries
            .get((index - self.start.index - 1) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable(index))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        if low <= self.start.index {
            return Err(StorageError::Compacted(low));
        }
        if high > self.last_index() + 1 {
            return Err(StorageError::Unavailable(high));
        }
        let mut bytes = 0;
        let first_out = out.len();
        let base = self.start.index + 1;
        for e in &self.entries[(low - base) as usize..(high - base) as usize] {
            bytes += e.size_bytes();
            if bytes > max_bytes && out.len() > first_out {
                break;
            }
            out.push(e.clone());
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.snapshot
            .clone()
            .ok_or(StorageError::SnapshotTemporarilyUnavailable)
    }
}
