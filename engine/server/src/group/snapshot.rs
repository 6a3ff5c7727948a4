//! Snapshots of a group: saving the state machine's image off the group task
//! (by policy, on admin request, on close) and installing an image the
//! leader sent.

use std::time::Instant;

use dongting_kv::KvStateMachine;
use dongting_net::Status;
use dongting_raft::{RawNode, Snapshot, SnapshotMeta};
use dongting_store::SnapshotPolicy;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{GroupMetrics, GroupTask};
use crate::inbox::AdminReply;
use crate::storage::{self, GroupStorage};
use crate::watch::WatchHub;
use dongting_proto::service::AdminResponse;

/// A snapshot being written off the group task.
struct SnapshotJob {
    meta: SnapshotMeta,
    started: Instant,
}

/// A snapshot written to disk: its index, size and how long it took.
pub(crate) struct Saved {
    pub(crate) index: u64,
    pub(crate) bytes: u64,
    pub(crate) micros: u64,
}

/// A group's snapshot state: when to save, the save under way, the admin
/// requests waiting for it.
pub(crate) struct Snapshots {
    policy: SnapshotPolicy,
    /// Whether log files the snapshot covers are deleted once it is saved.
    delete_logs: bool,
    /// Index of the newest snapshot saved or installed.
    pub(crate) last_index: u64,
    last_at: Instant,
    /// The snapshot being written on a blocking thread, if any.
    job: Option<SnapshotJob>,
    /// Admin requests waiting for the running snapshot.
    pub(crate) waiters: Vec<oneshot::Sender<AdminReply>>,
    done_tx: mpsc::UnboundedSender<Result<u64, String>>,
    /// Where the blocking thread reports the end of the running snapshot
    /// (the image's size, or why it failed).
    pub(crate) done_rx: mpsc::UnboundedReceiver<Result<u64, String>>,
}

impl Snapshots {
    /// `last_index`: the snapshot the group recovered from (0 for none).
    pub(crate) fn new(policy: SnapshotPolicy, delete_logs: bool, last_index: u64) -> Snapshots {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Snapshots {
            policy,
            delete_logs,
            last_index,
            last_at: Instant::now(),
            job: None,
            waiters: Vec::new(),
            done_tx,
            done_rx,
        }
    }

    /// Whether a snapshot is being written.
    pub(crate) fn running(&self) -> bool {
        self.job.is_some()
    }

    /// Whether the policy asks for a snapshot at `applied` now (`closing`:
    /// the group is about to close).
    pub(crate) fn due(&self, applied: u64, closing: bool) -> bool {
        let due = if closing {
            self.policy.due_on_close(self.last_index, applied)
        } else {
            self.policy
                .due(Instant::now(), self.last_at, self.last_index, applied)
        };
        due.is_some()
    }

    /// Starts writing a snapshot of `sm` at its applied index on a blocking
    /// thread; the state machine keeps applying meanwhile (its snapshot
    /// stream shares copy-on-write shards). Returns false when there is
    /// nothing new to snapshot; true when a snapshot is (already) running.
    pub(crate) fn start(
        &mut self,
        raft: &RawNode<GroupStorage>,
        sm: &KvStateMachine,
    ) -> Result<bool, String> {
        if self.job.is_some() {
            return Ok(true);
        }
        let index = sm.applied_index();
        self.last_at = Instant::now();
        if index == 0 || index <= self.last_index {
            return Ok(false);
        }
        let meta = raft
            .snapshot_meta(index)
            .map_err(|e| format!("snapshot metadata at {index}: {e}"))?;
        let st = raft.store();
        let writer = storage::blocking(|| st.begin_snapshot(&meta))
            .map_err(|e| format!("starting the snapshot at {index}: {e}"))?;
        let stream = sm.snapshot();
        let tx = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = storage::write_image(writer, stream)
                .map_err(|e| format!("writing the snapshot at {index}: {e}"));
            let _ = tx.send(r);
        });
        self.job = Some(SnapshotJob {
            meta,
            started: Instant::now(),
        });
        Ok(true)
    }

    /// The snapshot written off the task is on disk (`done`, or it failed):
    /// records it and moves the log start. `None` when no snapshot was
    /// running; else the snapshot's index and what became of it.
    pub(crate) fn finish(
        &mut self,
        done: Result<u64, String>,
        raft: &mut RawNode<GroupStorage>,
    ) -> Option<(u64, Result<Saved, String>)> {
        let job = self.job.take()?;
        let index = job.meta.index;
        let r = done.and_then(|bytes| {
            let delete_logs = self.delete_logs;
            let st = raft.store_mut();
            let moved = storage::blocking(|| st.snapshot_written(&job.meta, delete_logs))
                .map_err(|e| format!("recording the snapshot at {index}: {e}"))?;
            if moved {
                raft.on_compacted(index)
                    .map_err(|e| format!("compacting to {index}: {e}"))?;
            }
            Ok(bytes)
        });
        let r = r.map(|bytes| {
            self.last_index = self.last_index.max(index);
            Saved {
                index,
                bytes,
                micros: job.started.elapsed().as_micros() as u64,
            }
        });
        Some((index, r))
    }

    /// Installs `snap` from the leader: into the store, then into the state
    /// machine; the watches learn that the history restarted. Returns the
    /// image's size and how long the install took.
    pub(crate) fn install(
        &mut self,
        snap: &Snapshot,
        raft: &mut RawNode<GroupStorage>,
        sm: &mut KvStateMachine,
        watches: &mut WatchHub,
    ) -> Result<Saved, String> {
        let started = Instant::now();
        let index = snap.meta.index;
        let st = raft.store_mut();
        storage::blocking(|| st.install_snapshot(snap))
            .map_err(|e| format!("installing the snapshot at index {index} failed: {e}"))?;
        let chunks = storage::unframe_image(&snap.data)
            .map_err(|e| format!("snapshot from the leader is damaged: {e}"))?;
        let applied_before = sm.applied_index();
        sm.restore(chunks)
            .map_err(|e| format!("snapshot from the leader does not restore: {e}"))?;
        watches.on_restore(applied_before);
        self.last_index = index;
        Ok(Saved {
            index,
            bytes: snap.data.len() as u64,
            micros: started.elapsed().as_micros() as u64,
        })
    }
}

impl GroupTask {
    /// Starts a snapshot when the policy asks for one (`closing`: the group
    /// is about to close).
    pub(super) fn maybe_snapshot(&mut self, closing: bool) {
        if self.failed || !self.snapshots.due(self.sm.applied_index(), closing) {
            return;
        }
        if let Err(e) = self.snapshots.start(&self.raft, &self.sm) {
            GroupMetrics::add(&self.metrics.snapshots_failed, 1);
            warn!(group = self.group_id, error = %e, "snapshot failed");
            self.last_error = e;
        }
    }

    /// The snapshot written off the task is on disk (or failed): move the log
    /// start and answer the admin requests waiting for it.
    pub(super) fn finish_snapshot(&mut self, done: Result<u64, String>) {
        let Some((index, r)) = self.snapshots.finish(done, &mut self.raft) else {
            return;
        };
        match &r {
            Ok(saved) => {
                self.metrics.snapshot_done(false, saved.bytes, saved.micros);
                info!(
                    group = self.group_id,
                    node = self.shared.node_id,
                    term = self.raft.term(),
                    index = saved.index,
                    bytes = saved.bytes,
                    ms = saved.micros / 1000,
                    "snapshot saved"
                );
            }
            Err(e) => {
                GroupMetrics::add(&self.metrics.snapshots_failed, 1);
                warn!(group = self.group_id, index, error = %e, "snapshot failed");
                self.last_error = e.clone();
            }
        }
        self.snapshot_for_backup(r.as_ref().map(|s| s.index).map_err(|e| e.as_str()));
        for w in self.snapshots.waiters.drain(..) {
            let _ = w.send(match &r {
                Ok(_) => Ok(AdminResponse {
                    index,
                    message: format!("snapshot saved at index {index}"),
                }),
                Err(e) => Err((Status::SYS_ERROR, e.clone())),
            });
        }
    }
}
