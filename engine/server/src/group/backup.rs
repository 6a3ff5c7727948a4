//! Scheduled backups of a group: every `backup_interval_seconds` the group's
//! leader saves a snapshot (the ordinary snapshot path), then a blocking
//! thread wraps that snapshot file into a backup file in `backup_dir`
//! (the `dongting backup` format), verifies what it wrote and deletes the
//! group's oldest backups beyond `backup_keep`.
//!
//! Backup files are named `group-<id>-<index as 20 digits>-<UTC time>.dtbackup`,
//! so they sort by index, then time; "oldest" means first in that order.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dongting_raft::Role;
use dongting_store::SNAPSHOT_DIR;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{GroupMetrics, GroupTask};
use crate::backup::{utc_stamp, verify_backup, write_backup_from};
use crate::clock::wall_ms;

const SUFFIX: &str = ".dtbackup";

/// Where and how often a group backs up.
#[derive(Debug, Clone)]
pub(crate) struct BackupSchedule {
    pub(crate) dir: PathBuf,
    pub(crate) interval: Duration,
    pub(crate) keep: usize,
}

/// A backup written and verified.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) index: u64,
    pub(crate) created_ms: u64,
    pub(crate) bytes: u64,
    pub(crate) micros: u64,
    pub(crate) file: PathBuf,
}

/// A group's backup state: the schedule, the backup under way, the last
/// good one.
pub(crate) struct Backups {
    schedule: Option<BackupSchedule>,
    /// When the last backup was started; `None`: none since the start and
    /// none known, so the first is due at once.
    last_at: Option<Instant>,
    /// A snapshot was asked for a backup: back it up once it is saved.
    waiting: bool,
    /// A backup file is being written on a blocking thread.
    running: bool,
    /// Index and creation time (ms since the epoch) of the last good backup
    /// (0 when none is known).
    pub(crate) last_index: u64,
    pub(crate) last_ms: u64,
    done_tx: mpsc::UnboundedSender<Result<Written, String>>,
    pub(crate) done_rx: mpsc::UnboundedReceiver<Result<Written, String>>,
}

impl Backups {
    /// `schedule`: `None` turns scheduled backups off. `last`: the newest
    /// backup of the group already in the directory (index, ms).
    pub(crate) fn new(schedule: Option<BackupSchedule>, last: Option<(u64, u64)>) -> Backups {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (last_index, last_ms) = last.unwrap_or((0, 0));
        Backups {
            schedule,
            last_at: last.map(|_| Instant::now()),
            waiting: false,
            running: false,
            last_index,
            last_ms,
            done_tx,
            done_rx,
        }
    }
}

fn prefix(group: u32) -> String {
    format!("group-{group}-")
}

/// The group's backup files in `dir`, oldest first, with their index.
fn list(dir: &Path, group: u32) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let p = prefix(group);
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&p) else {
            continue;
        };
        if !rest.ends_with(SUFFIX) {
            continue;
        }
        let Some(index) = rest.split('-').next().and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        out.push((e.path(), index));
    }
    out.sort();
    Ok(out)
}

/// The newest backup of `group` in `dir`: its index and modification time
/// (ms since the epoch). Blocking.
pub(crate) fn newest(dir: &Path, group: u32) -> Option<(u64, u64)> {
    let (path, index) = list(dir, group).ok()?.pop()?;
    let ms = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some((index, ms))
}

/// Opens the complete snapshot file at `index` in `snap_dir`.
fn open_snapshot(snap_dir: &Path, index: u64) -> Result<(File, PathBuf), String> {
    let p = format!("{index:020}-");
    let names =
        std::fs::read_dir(snap_dir).map_err(|e| format!("list {}: {e}", snap_dir.display()))?;
    for e in names {
        let e = e.map_err(|e| format!("list {}: {e}", snap_dir.display()))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&p) && name.ends_with(".snap") {
            let path = e.path();
            let f = File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
            return Ok((f, path));
        }
    }
    Err(format!(
        "no snapshot file at index {index} in {}",
        snap_dir.display()
    ))
}

/// Writes, verifies and rotates one backup of `group` from its snapshot at
/// `index`. Blocking. Leaves no partial file behind on failure.
fn run_backup(
    group: u32,
    snap_dir: &Path,
    index: u64,
    s: &BackupSchedule,
) -> Result<Written, String> {
    let started = Instant::now();
    let (src, snap_path) = open_snapshot(snap_dir, index)?;
    std::fs::create_dir_all(&s.dir).map_err(|e| format!("create {}: {e}", s.dir.display()))?;
    let created_ms = wall_ms();
    let file = s.dir.join(format!(
        "{}{index:020}-{}{SUFFIX}",
        prefix(group),
        utc_stamp(created_ms)
    ));
    write_backup_from(group, &src, &snap_path, &file, created_ms)?;
    let info = match verify_backup(&file) {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(format!("the written backup does not verify: {e}"));
        }
    };
    let all = list(&s.dir, group).map_err(|e| format!("list {}: {e}", s.dir.display()))?;
    if all.len() > s.keep {
        for (old, _) in &all[..all.len() - s.keep] {
            match std::fs::remove_file(old) {
                Ok(()) => info!(group, file = %old.display(), "removed old backup"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {e}", old.display())),
            }
        }
    }
    Ok(Written {
        index: info.header.index,
        created_ms,
        bytes: info.file_bytes,
        micros: started.elapsed().as_micros() as u64,
        file,
    })
}

impl GroupTask {
    /// On the leader, when the interval has passed since the last attempt
    /// (or no backup is known yet): asks for a snapshot to back up.
    pub(super) fn maybe_backup(&mut self) {
        let b = &mut self.backups;
        let Some(s) = &b.schedule else { return };
        if b.waiting || b.running || self.failed || self.stopping.is_some() {
            return;
        }
        if self.raft.role() != Role::Leader {
            return;
        }
        if b.last_at.is_some_and(|t| t.elapsed() < s.interval) {
            return;
        }
        b.last_at = Some(Instant::now());
        if self.snapshots.running() {
            b.waiting = true;
            return;
        }
        match self.snapshots.start(&self.raft, &self.sm) {
            Ok(true) => self.backups.waiting = true,
            Ok(false) => {
                let index = self.snapshots.last_index;
                if index > 0 {
                    self.start_backup(index);
                }
            }
            Err(e) => self.backup_failed(format!("snapshot for the backup: {e}")),
        }
    }

    /// The snapshot a backup waited for ended (`saved`: its index, or why
    /// it failed).
    pub(super) fn snapshot_for_backup(&mut self, saved: Result<u64, &str>) {
        if !self.backups.waiting {
            return;
        }
        self.backups.waiting = false;
        match saved {
            Ok(index) => self.start_backup(index),
            Err(e) => self.backup_failed(format!("snapshot for the backup: {e}")),
        }
    }

    fn start_backup(&mut self, index: u64) {
        let Some(s) = self.backups.schedule.clone() else {
            return;
        };
        self.backups.running = true;
        let group = self.group_id;
        let snap_dir = self.dir.join(SNAPSHOT_DIR);
        let tx = self.backups.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = run_backup(group, &snap_dir, index, &s)
                .map_err(|e| format!("backup of index {index}: {e}"));
            let _ = tx.send(r);
        });
    }

    fn backup_failed(&mut self, e: String) {
        GroupMetrics::add(&self.metrics.backups_failed, 1);
        warn!(group = self.group_id, error = %e, "backup failed");
    }

    /// The backup written off the task ended.
    pub(super) fn finish_backup(&mut self, done: Result<Written, String>) {
        self.backups.running = false;
        match done {
            Ok(w) => {
                self.backups.last_index = w.index;
                self.backups.last_ms = w.created_ms;
                GroupMetrics::add(&self.metrics.backups_written, 1);
                GroupMetrics::set(&self.metrics.backup_last_index, w.index);
                GroupMetrics::set(&self.metrics.backup_last_ms, w.created_ms);
                info!(
                    group = self.group_id,
                    index = w.index,
                    bytes = w.bytes,
                    ms = w.micros / 1000,
                    file = %w.file.display(),
                    "backup written"
                );
            }
            Err(e) => self.backup_failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_the_groups_backups_oldest_first() {
        let dir = std::env::temp_dir().join(format!("dt-bk-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in [
            "group-1-00000000000000000020-20240101T000000000Z.dtbackup",
            "group-1-00000000000000000009-20240102T000000000Z.dtbackup",
            "group-1-00000000000000000030-20240103T000000000Z.dtbackup.tmp",
            "group-11-00000000000000000040-20240101T000000000Z.dtbackup",
            "other.dtbackup",
        ] {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
        let got: Vec<u64> = list(&dir, 1).unwrap().into_iter().map(|(_, i)| i).collect();
        assert_eq!(got, vec![9, 20]);
        assert_eq!(newest(&dir, 1).map(|(i, _)| i), Some(20));
        assert_eq!(newest(&dir, 2), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_backup_leaves_no_file() {
        let root = std::env::temp_dir().join(format!("dt-bk-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let snap = root.join("snapshot");
        std::fs::create_dir_all(&snap).unwrap();
        // A snapshot file that is not one: the write refuses it.
        std::fs::write(snap.join(format!("{:020}-{:020}.snap", 5, 1)), b"garbage").unwrap();
        let s = BackupSchedule {
            dir: root.join("backups"),
            interval: Duration::from_secs(1),
            keep: 2,
        };
        let e = run_backup(3, &snap, 5, &s).expect_err("not a snapshot");
        assert!(e.contains("snapshot"), "{e}");
        assert!(run_backup(3, &snap, 6, &s).is_err(), "no snapshot at 6");
        let left: Vec<_> = std::fs::read_dir(&s.dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
