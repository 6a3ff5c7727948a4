//! The bounded in-memory history of watch events, ordered by raft index.
//!
//! A watcher that has seen every event up to index N resumes with
//! [`EventHistory::events_after`]: it gets every later event, or
//! `HISTORY_COMPACTED` when events after N have already been dropped (it must
//! then re-read the keys it watches and continue from the read's index).

use std::collections::VecDeque;

use crate::error::KvError;
use crate::types::WatchEvent;

/// Ring buffer of recent events, bounded by count and by referenced bytes.
#[derive(Debug, Clone)]
pub(crate) struct EventHistory {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    /// Events with index <= floor may have been dropped (or predate a restore).
    floor: u64,
    max_events: usize,
    max_bytes: usize,
}

fn size_of(e: &WatchEvent) -> usize {
    e.key.len() + e.value.len() + 64
}

impl EventHistory {
    pub(crate) fn new(floor: u64, max_events: usize, max_bytes: usize) -> EventHistory {
        EventHistory {
            events: VecDeque::new(),
            bytes: 0,
            floor,
            max_events,
            max_bytes,
        }
    }

    /// Appends the events of one applied index and drops the oldest past the bounds.
    pub(crate) fn push(&mut self, events: &[WatchEvent]) {
        for e in events {
            self.bytes += size_of(e);
            self.events.push_back(e.clone());
        }
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= size_of(&old);
            self.floor = self.floor.max(old.index);
        }
    }

    /// The lowest index a watcher may resume after.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// Up to `limit` events with index > `after`, in order. A batch never ends in
    /// the middle of one index's events, so resuming from the last returned
    /// index loses nothing (it may return more than `limit` to finish an index).
    pub(crate) fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WatchEvent>, KvError> {
        if after < self.floor {
            return Err(KvError::HistoryCompacted(format!(
                "events after index {after} are no longer kept (history starts after {}); re-read and resume from the read's index",
                self.floor
            )));
        }
        let start = self.events.partition_point(|e| e.index <= after);
        let mut out = Vec::new();
        let mut last = None;
        for e in self.events.range(start..) {
            if out.len() >= limit && last != Some(e.index) {
                break;
            }
            last = Some(e.index);
            out.push(e.clone());
        }
        Ok(out)
    }
}
