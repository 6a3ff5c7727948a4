//! The bounded in-memory history of watch events, ordered by raft index.
//!
//! A watcher that has seen every event up to index N resumes with
//! [`EventHistory::events_after`]: it gets every later event, or
//! `HISTORY_COMPACTED` when events after N have already been dropped (it must
//! then re-read the keys it watches and continue from the read's index).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::KvError;
use crate::types::{NodeState, WatchEvent};

/// One kept event; its key and value follow each other in the byte ring.
#[derive(Debug, Clone, Copy)]
struct Meta {
    index: u64,
    /// Where its key starts, counted from the first byte ever pushed.
    at: u64,
    state: NodeState,
    key_len: u32,
    value_len: u32,
}

/// Ring of recent events, bounded by count and by bytes.
///
/// Keys and values are copied into one byte ring rather than kept as
/// reference-counted slices: an event then pins no request buffer, and
/// dropping the oldest event is moving an offset, not freeing memory that
/// has long left the cache (one write per put reaches this ring).
#[derive(Debug, Clone)]
pub(crate) struct EventHistory {
    events: VecDeque<Meta>,
    /// The keys and values of `events`, in order.
    data: VecDeque<u8>,
    /// The position of `data`'s first byte, counted like [`Meta::at`].
    base: u64,
    /// Events with index <= floor may have been dropped (or predate a restore).
    floor: u64,
    max_events: usize,
    max_bytes: usize,
}

/// Bytes accounted per event besides its key and value.
const OVERHEAD: usize = 64;

impl EventHistory {
    pub(crate) fn new(floor: u64, max_events: usize, max_bytes: usize) -> EventHistory {
        EventHistory {
            events: VecDeque::new(),
            data: VecDeque::new(),
            base: 0,
            floor,
            max_events,
            max_bytes,
        }
    }

    /// Appends the events of one applied index and drops the oldest past the bounds.
    pub(crate) fn push(&mut self, events: &[WatchEvent]) {
        for e in events {
            let at = self.base + self.data.len() as u64;
            self.data.extend(e.key.iter());
            self.data.extend(e.value.iter());
            self.events.push_back(Meta {
                index: e.index,
                at,
                state: e.state,
                key_len: e.key.len() as u32,
                value_len: e.value.len() as u32,
            });
        }
        while self.events.len() > self.max_events || self.bytes() > self.max_bytes {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            let len = old.key_len as usize + old.value_len as usize;
            self.data.drain(..len);
            self.base += len as u64;
            self.floor = self.floor.max(old.index);
        }
    }

    /// Accounted bytes: the keys and values, and [`OVERHEAD`] per event.
    fn bytes(&self) -> usize {
        self.data.len() + OVERHEAD * self.events.len()
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
            let (k, v) = (e.key_len as usize, e.value_len as usize);
            let pos = (e.at - self.base) as usize;
            out.push(WatchEvent {
                index: e.index,
                key: self.copy_out(pos, k),
                state: e.state,
                value: self.copy_out(pos + k, v),
            });
        }
        Ok(out)
    }

    fn copy_out(&self, at: usize, len: usize) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        let (front, back) = self.data.as_slices();
        let mut v = Vec::with_capacity(len);
        if at < front.len() {
            let end = (at + len).min(front.len());
            v.extend_from_slice(&front[at..end]);
            v.extend_from_slice(&back[..len - (end - at)]);
        } else {
            let at = at - front.len();
            v.extend_from_slice(&back[at..at + len]);
        }
        Bytes::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(index: u64, key: &str, value: &str) -> WatchEvent {
        WatchEvent {
            index,
            key: Bytes::copy_from_slice(key.as_bytes()),
            state: if value.is_empty() {
                NodeState::Absent
            } else {
                NodeState::Value
            },
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn events_come_back_whole_after_the_ring_wraps() {
        // Few events kept, so the byte ring's front moves and it wraps.
        let mut h = EventHistory::new(0, 5, 1 << 20);
        let mut all = Vec::new();
        for i in 1..=200u64 {
            let e = event(i, &format!("k.{}", i % 7), &"v".repeat((i % 13) as usize));
            h.push(std::slice::from_ref(&e));
            all.push(e);
            let kept = h.events_after(h.floor(), 100).unwrap();
            assert_eq!(
                kept,
                all[all.len().saturating_sub(5)..].to_vec(),
                "after {i}"
            );
        }
        assert_eq!(h.floor(), 195);
        assert_eq!(h.events_after(194, 10).unwrap_err().code(), 104);
        assert_eq!(h.events_after(198, 10).unwrap(), all[198..].to_vec());
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_events() {
        let size = 1 + 10 + OVERHEAD;
        let mut h = EventHistory::new(0, 1000, 3 * size);
        for i in 1..=4u64 {
            h.push(&[event(i, "k", "0123456789")]);
        }
        assert_eq!(h.floor(), 1);
        assert_eq!(h.events_after(1, 10).unwrap().len(), 3);
        // An index's events stay together even past the limit.
        let mut h = EventHistory::new(0, 1000, 1 << 20);
        h.push(&[event(1, "a", "x"), event(1, "b", "")]);
        h.push(&[event(2, "c", "y")]);
        let got = h.events_after(0, 1).unwrap();
        assert_eq!(got, vec![event(1, "a", "x"), event(1, "b", "")]);
    }
}
