//! When to take a snapshot: the original's knobs and a helper the node runtime
//! asks on each tick.

use std::time::{Duration, Instant};

/// Snapshot scheduling and retention settings of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// `saveSnapshotSeconds`: take a snapshot this long after the previous one
    /// if anything was applied since (default 3600; 0 disables the timer).
    pub save_snapshot_seconds: u64,
    /// Take a snapshot once this many entries were applied since the previous
    /// one (default 0 = disabled).
    pub save_snapshot_entries: u64,
    /// `saveSnapshotWhenClose`: take a snapshot on clean shutdown if anything
    /// was applied since the previous one (default true).
    pub save_snapshot_when_close: bool,
    /// `maxKeepSnapshots`: complete snapshots kept on disk (default 2).
    pub max_keep_snapshots: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            save_snapshot_seconds: 3600,
            save_snapshot_entries: 0,
            save_snapshot_when_close: true,
            max_keep_snapshots: 2,
        }
    }
}

/// Why a snapshot is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// `save_snapshot_seconds` elapsed.
    Interval,
    /// `save_snapshot_entries` were applied.
    Entries,
    /// Clean shutdown with `save_snapshot_when_close`.
    Close,
}

impl SnapshotPolicy {
    /// Whether a periodic snapshot is due now. `last_snapshot_at` is when the
    /// previous snapshot finished (or when the group started), and
    /// `last_snapshot_index`/`applied_index` say how far the previous snapshot
    /// and the state machine got. Never due when nothing new was applied.
    /// Pure and cheap; the caller supplies the clock.
    pub fn due(
        &self,
        now: Instant,
        last_snapshot_at: Instant,
        last_snapshot_index: u64,
        applied_index: u64,
    ) -> Option<SnapshotReason> {
        if applied_index <= last_snapshot_index {
            return None;
        }
        if self.save_snapshot_entries > 0
            && applied_index - last_snapshot_index >= self.save_snapshot_entries
        {
            return Some(SnapshotReason::Entries);
        }
        if self.save_snapshot_seconds > 0
            && now.saturating_duration_since(last_snapshot_at)
                >= Duration::from_secs(self.save_snapshot_seconds)
        {
            return Some(SnapshotReason::Interval);
        }
        None
    }

    /// Whether to take a snapshot during a clean shutdown.
    pub fn due_on_close(
        &self,
        last_snapshot_index: u64,
        applied_index: u64,
    ) -> Option<SnapshotReason> {
        (self.save_snapshot_when_close && applied_index > last_snapshot_index)
            .then_some(SnapshotReason::Close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_entries_and_close() {
        let t0 = Instant::now();
        let p = SnapshotPolicy {
            save_snapshot_seconds: 10,
            save_snapshot_entries: 100,
            ..Default::default()
        };
        assert_eq!(p.due(t0, t0, 5, 5), None);
        assert_eq!(
            p.due(t0 + Duration::from_secs(11), t0, 5, 5),
            None,
            "nothing new applied"
        );
        assert_eq!(
            p.due(t0 + Duration::from_secs(11), t0, 5, 6),
            Some(SnapshotReason::Interval)
        );
        assert_eq!(p.due(t0 + Duration::from_secs(1), t0, 5, 104), None);
        assert_eq!(
            p.due(t0 + Duration::from_secs(1), t0, 5, 105),
            Some(SnapshotReason::Entries)
        );
        assert_eq!(p.due_on_close(5, 6), Some(SnapshotReason::Close));
        assert_eq!(p.due_on_close(6, 6), None);
        let off = SnapshotPolicy {
            save_snapshot_seconds: 0,
            save_snapshot_when_close: false,
            ..Default::default()
        };
        assert_eq!(
            off.due(t0 + Duration::from_secs(99_999), t0, 0, 1_000_000),
            None
        );
        assert_eq!(off.due_on_close(0, 1), None);
    }
}
