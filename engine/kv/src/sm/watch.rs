//! Watch history reads and the key-in-directory test used by watch routing.

use crate::error::KvError;
use crate::key::SEPARATOR;
use crate::types::WatchEvent;

use super::KvStateMachine;

impl KvStateMachine {
    /// Watch events with raft index above `after_index`, in order, at most about
    /// `limit` (an index's events are never split). Fails with
    /// `HISTORY_COMPACTED` when some of those events are no longer kept: the
    /// watcher must re-read and resume from the read's index.
    pub fn events_after(&self, after_index: u64, limit: usize) -> Result<Vec<WatchEvent>, KvError> {
        self.history.events_after(after_index, limit)
    }

    /// The lowest index a watcher can resume after without `HISTORY_COMPACTED`.
    pub fn history_floor(&self) -> u64 {
        self.history.floor()
    }
}

/// True when `key` is `dir` itself or inside it (used by watch routing).
pub fn is_under(key: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || key == dir
        || (key.len() > dir.len() && key.starts_with(dir) && key[dir.len()] == SEPARATOR)
}
