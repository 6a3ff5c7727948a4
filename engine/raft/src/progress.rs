//! The leader's view of one follower: how much of the log it has and what is in
//! flight to it.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::SnapshotMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// One append at a time until the match point is found.
    Probe,
    /// Pipelined appends bounded by the in-flight windows.
    Replicate,
    /// A snapshot is being streamed.
    Snapshot,
}

pub(crate) struct SnapshotSend {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Bytes,
    /// Offset the follower confirmed it expects next.
    pub(crate) offset: u64,
    /// Whether the chunk at `offset` is in flight.
    pub(crate) in_flight: bool,
}

pub(crate) struct Progress {
    pub(crate) match_index: u64,
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    pub(crate) probe_sent: bool,
    /// `(last index, entry count, bytes)` of each append in flight.
    inflight: VecDeque<(u64, u64, u64)>,
    inflight_entries: u64,
    inflight_bytes: u64,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    pub(crate) applied: u64,
    pub(crate) acked_seq: u64,
    pub(crate) acked_send_ms: u64,
    /// Commit index last sent to the follower.
    pub(crate) sent_commit: u64,
    /// `match_index` at the previous heartbeat response (stall detection).
    pub(crate) match_at_heartbeat: u64,
    pub(crate) snapshot: Option<SnapshotSend>,
}

impl Progress {
    pub(crate) fn new(next_index: u64) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_entries: 0,
            inflight_bytes: 0,
            recent_active: false,
            applied: 0,
            acked_seq: 0,
            acked_send_ms: 0,
            sent_commit: 0,
            match_at_heartbeat: 0,
            snapshot: None,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.clear_inflight();
        self.snapshot = None;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.clear_inflight();
    }

    pub(crate) fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_entries = 0;
        self.inflight_bytes = 0;
    }

    pub(crate) fn inflight_full(&self, max_msgs: usize, max_bytes: u64) -> bool {
        self.inflight.len() >= max_msgs || self.inflight_bytes >= max_bytes
    }

    pub(crate) fn add_inflight(&mut self, last: u64, entries: u64, bytes: u64) {
        self.inflight.push_back((last, entries, bytes));
        self.inflight_entries += entries;
        self.inflight_bytes += bytes;
    }

    pub(crate) fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }

    /// Free every in-flight append acknowledged by `index`.
    pub(crate) fn free_to(&mut self, index: u64) {
        while let Some(&(last, n, b)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_entries -= n;
            self.inflight_bytes -= b;
        }
    }

    /// Record a successful append up to `index`; returns whether it was news.
    pub(crate) fn update(&mut self, index: u64) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
            self.probe_sent = false;
        }
        if self.next_index < index + 1 {
            self.next_index = index + 1;
        }
        self.free_to(index);
        news
    }

    pub(crate) fn ack(&mut self, seq: u64, send_ms: u64, applied: u64) {
        self.recent_active = true;
        self.acked_seq = self.acked_seq.max(seq);
        self.acked_send_ms = self.acked_send_ms.max(send_ms);
        self.applied = self.applied.max(applied);
    }
}
