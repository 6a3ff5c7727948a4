//! The log as the core sees it: a window of recent entries in memory on top of
//! the application's [`Storage`].
//!
//! Indices `< mem_first` are read from storage; `>= mem_first` from memory. Entries
//! leave memory only once persisted (and applied, and replicated when leading).

use std::collections::VecDeque;

use crate::error::StorageError;
use crate::storage::Storage;
use crate::types::{Entry, LogId};

pub(crate) struct RaftLog<S> {
    pub(crate) store: S,
    mem: VecDeque<Entry>,
    mem_first: u64,
    /// Snapshot / compaction point as the core sees it.
    pub(crate) start: LogId,
    /// Entries `<= persisted` are durable (reported through `on_persisted`).
    pub(crate) persisted: u64,
    /// Entries `<= handed` were given to the application for persistence.
    pub(crate) handed: u64,
    pub(crate) commit: u64,
    /// Entries `<= apply_handed` were given to the application for applying.
    pub(crate) apply_handed: u64,
    pub(crate) applied: u64,
}

impl<S: Storage> RaftLog<S> {
    pub(crate) fn new(store: S, commit: u64, applied: u64) -> RaftLog<S> {
        let start = store.log_start();
        let last = store.last_index();
        let commit = commit.clamp(start.index, last);
        let applied = applied.clamp(start.index, commit);
        RaftLog {
            store,
            mem: VecDeque::new(),
            mem_first: last + 1,
            start,
            persisted: last,
            handed: last,
            commit,
            apply_handed: applied,
            applied,
        }
    }

    #[inline]
    pub(crate) fn last_index(&self) -> u64 {
        self.mem_first + self.mem.len() as u64 - 1
    }

    pub(crate) fn last_term(&self) -> u64 {
        match self.mem.back() {
            Some(e) => e.term,
            None => self.term(self.last_index()).unwrap_or(0),
        }
    }

    pub(crate) fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.start.index {
            return Ok(self.start.term);
        }
        if index < self.start.index {
            return Err(StorageError::Compacted(index));
        }
        if index >= self.mem_first {
            return self
                .mem
                .get((index - self.mem_first) as usize)
                .map(|e| e.term)
                .ok_or(StorageError::Unavailable(index));
        }
        self.store.term(index)
    }

    pub(crate) fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Whether a candidate with this last entry is at least as up to date as us.
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Largest index `<= index` whose term is `<= term` (fast conflict resolution).
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        let mut i = index.min(self.last_index());
        while i > self.start.index {
            match self.term(i) {
                Ok(t) if t > term => i -= 1,
                _ => break,
            }
        }
        i
    }

    pub(crate) fn push(&mut self, e: Entry) {
        debug_assert_eq!(e.index, self.last_index() + 1);
        self.mem.push_back(e);
    }

    /// Remove every entry at or after `from`.
    pub(crate) fn truncate(&mut self, from: u64) {
        debug_assert!(from > self.commit, "truncating committed entry {from}");
        if from >= self.mem_first {
            self.mem.truncate((from - self.mem_first) as usize);
        } else {
            self.mem.clear();
            self.mem_first = from;
        }
        self.persisted = self.persisted.min(from - 1);
        self.handed = self.handed.min(from - 1);
    }

    /// Append `[low, high)` to `out`, at most `max_bytes` (at least one entry).
    pub(crate) fn entries(
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
        let first_out = out.len();
        let mut bytes = 0;
        let mut low = low;
        if low < self.mem_first {
            let h = high.min(self.mem_first);
            self.store.entries(low, h, max_bytes, out)?;
            bytes = out[first_out..].iter().map(Entry::size_bytes).sum();
            low += (out.len() - first_out) as u64;
            if low < h || bytes >= max_bytes {
                return Ok(());
            }
        }
        if low < high {
            let a = (low - self.mem_first) as usize;
            let b = (high - self.mem_first) as usize;
            for e in self.mem.range(a..b) {
                bytes += e.size_bytes();
                if bytes > max_bytes && out.len() > first_out {
                    break;
                }
                out.push(e.clone());
            }
        }
        Ok(())
    }

    /// Entries not yet handed out for persistence.
    pub(crate) fn take_unhanded(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.handed >= last {
            return Vec::new();
        }
        let from = self.handed + 1;
        self.handed = last;
        // Unhanded entries are always in memory: truncation and pushes only touch
        // memory and `handed <= persisted`-style invariants keep them there.
        debug_assert!(from >= self.mem_first);
        let a = (from.max(self.mem_first) - self.mem_first) as usize;
        self.mem.range(a..).cloned().collect()
    }

    pub(crate) fn on_persisted(&mut self, id: LogId) -> bool {
        if id.index <= self.persisted || id.index > self.handed {
            return false;
        }
        if !self.match_term(id.index, id.term) {
            return false;
        }
        self.persisted = id.index;
        true
    }

    /// Drop persisted entries `<= upto` from memory.
    pub(crate) fn evict(&mut self, upto: u64) {
        let upto = upto.min(self.persisted);
        while let Some(e) = self.mem.front() {
            if e.index > upto {
                break;
            }
            self.mem.pop_front();
            self.mem_first += 1;
        }
    }

    pub(crate) fn mem_len(&self) -> usize {
        self.mem.len()
    }

    pub(crate) fn mem_first(&self) -> u64 {
        self.mem_first
    }

    /// Reset the log to a snapshot point (follower installing a snapshot).
    pub(crate) fn restore(&mut self, id: LogId) {
        self.mem.clear();
        self.mem_first = id.index + 1;
        self.start = id;
        self.persisted = id.index;
        self.handed = id.index;
        self.commit = self.commit.max(id.index);
        self.apply_handed = id.index;
        self.applied = id.index;
    }

    /// The application compacted its storage up to `index`.
    pub(crate) fn compacted(&mut self, index: u64) -> Result<(), StorageError> {
        if index <= self.start.index {
            return Ok(());
        }
        if index > self.applied || index > self.persisted {
            return Err(StorageError::Unavailable(index));
        }
        let term = self.term(index)?;
        self.start = LogId { index, term };
        self.evict(index);
        if self.mem_first <= index {
            self.mem_first = index + 1;
        }
        Ok(())
    }
}
