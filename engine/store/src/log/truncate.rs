//! Cutting the log: suffix truncation, reset after a snapshot, and prefix compaction.

use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};
use crate::io::Command;
use crate::segment::SEGMENT_HEADER_BYTES;

use super::{Pending, PendingKind, RaftLog, SegMeta};

impl RaftLog {
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
                remove.push((s.first_index, s.last_index()));
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
}
