//! Opening a group on this node: its storage (recovering log and snapshot),
//! state machine and raft core, and the task that drives them.

use std::sync::Arc;

use dongting_kv::{KvLimits, KvStateMachine};
use dongting_raft::{Membership, NodeId, RawNode, Storage};
use dongting_store::{LogConfig, SnapshotPolicy};
use tokio::sync::{Notify, mpsc, watch};
use tracing::info;

use crate::clock::{mono_ms, wall_ms};
use crate::config::GroupConfig;
use crate::group::{GroupTask, Observed, Pending, Persistence, Reads, Snapshots};
use crate::shared::{GroupHandle, NodeShared};
use crate::storage::{self, GroupStorage};
use dongting_proto::status::GroupStatus;

/// Inbox size of a group task; a full inbox answers FLOW_CONTROL.
const GROUP_INBOX: usize = 65_536;

/// Opens a group's storage and state machine and starts its task.
pub(super) async fn open_group(
    shared: &Arc<NodeShared>,
    g: &GroupConfig,
) -> Result<GroupHandle, String> {
    let cfg = &shared.cfg;
    let settings = g.effective(&cfg.group_defaults);
    let dir = storage::group_dir(&cfg.data_dir, g.id);
    let notify = Arc::new(Notify::new());
    let n2 = notify.clone();
    let mut log_cfg = LogConfig {
        sync_force: settings.sync_force,
        auto_delete_log_delay_seconds: settings.auto_delete_log_delay_seconds,
        cache_bytes: settings.log_cache_bytes,
        slow_fsync_warn_ms: cfg.slow_fsync_warn_ms,
        group: g.id,
        notifier: Some(Arc::new(move || n2.notify_one())),
        ..LogConfig::default()
    };
    if let Some(fs) = &shared.fs {
        log_cfg.fs = fs.clone();
    }
    let ids = |v: &[u32]| v.iter().map(|&i| NodeId::from(i)).collect::<Vec<_>>();
    let seed = Membership::new(&ids(&g.members), &ids(&g.observers));
    let max_keep = settings.max_keep_snapshots.max(1) as usize;
    let d2 = dir.clone();
    let mut rec =
        tokio::task::spawn_blocking(move || GroupStorage::open(&d2, log_cfg, max_keep, seed))
            .await
            .map_err(|e| format!("group {}: opening storage panicked: {e}", g.id))?
            .map_err(|e| format!("group {}: {e}", g.id))?;
    let limits = KvLimits {
        max_key_bytes: cfg.limits.max_key_bytes as usize,
        max_value_bytes: cfg.limits.max_value_bytes as usize,
        // A list answer stays a fifth under the frame for its encoding.
        max_read_bytes: cfg.limits.max_frame_bytes as usize / 5 * 4,
        ..KvLimits::default()
    };
    let mut sm = KvStateMachine::new(limits);
    let mut applied = 0;
    if let Some((index, image)) = rec.snapshot {
        let chunks = storage::unframe_image(&image).map_err(|e| format!("group {}: {e}", g.id))?;
        sm.restore(chunks)
            .map_err(|e| format!("group {}: snapshot at {index} does not restore: {e}", g.id))?;
        applied = index;
    }
    let mut rc = dongting_raft::Config::new(NodeId::from(cfg.node_id));
    rc.elect_timeout_ms = cfg.elect_timeout_ms;
    rc.heartbeat_interval_ms = cfg.heartbeat_interval_ms;
    rc.group = g.id;
    rc.lease_drift_margin_ms = (cfg.elect_timeout_ms / 10).max(1);
    rc.max_inflight_bytes = settings.max_replicate_bytes;
    rc.max_inflight_msgs = (settings.max_replicate_items as usize / 256).clamp(4, 256);
    rc.max_entry_bytes = u64::from(cfg.limits.max_frame_bytes);
    rc.max_apply_entries = crate::group::APPLY_CHUNK;
    rc.applied = applied;
    rc.seed = wall_ms() ^ (u64::from(g.id) << 32) ^ u64::from(std::process::id());
    #[cfg(feature = "failpoints")]
    {
        use crate::failpoints::{Failpoint, active};
        if active(Failpoint::StaleLeaderRead) {
            rc.check_quorum = false;
            rc.lease_read = false;
        }
        if active(Failpoint::LeaseWithoutQuorum) {
            rc.mutation = dongting_raft::Mutation::LeaseWithoutQuorum;
        } else if active(Failpoint::CountUnpersistedSelf) {
            rc.mutation = dongting_raft::Mutation::CountUnpersistedSelf;
        }
    }
    let fsync = rec.storage.log_mut().fsync_stats();
    let schedule = settings
        .backup_dir
        .clone()
        .map(|dir| crate::group::backup::BackupSchedule {
            dir,
            interval: std::time::Duration::from_secs(settings.backup_interval_seconds.max(1)),
            keep: settings.backup_keep.max(1) as usize,
        });
    let last_backup = match &schedule {
        Some(s) => {
            let (d, id) = (s.dir.clone(), g.id);
            tokio::task::spawn_blocking(move || crate::group::backup::newest(&d, id))
                .await
                .unwrap_or(None)
        }
        None => None,
    };
    let metrics = Arc::new(crate::group::GroupMetrics::new(
        cfg.servers
            .iter()
            .map(|s| s.id)
            .filter(|&id| id != cfg.node_id),
        schedule.as_ref().map_or(0, |s| s.interval.as_secs()),
    ));
    if let Some((index, ms)) = last_backup {
        crate::group::GroupMetrics::set(&metrics.backup_last_index, index);
        crate::group::GroupMetrics::set(&metrics.backup_last_ms, ms);
    }
    let initial = rec.storage.initial_state().unwrap_or_default();
    let hs = initial.hard_state;
    let raft =
        RawNode::new(rc, rec.storage, mono_ms()).map_err(|e| format!("group {}: {e}", g.id))?;
    let tick_ms = (cfg.heartbeat_interval_ms / 4).clamp(2, 50);
    let (tx, rx) = mpsc::channel(GROUP_INBOX);
    let (status_tx, status_rx) = watch::channel(GroupStatus {
        group_id: g.id,
        node_id: cfg.node_id,
        members: g.members.clone(),
        observers: g.observers.clone(),
        ..GroupStatus::default()
    });
    let task = GroupTask {
        group_id: g.id,
        shared: shared.clone(),
        raft,
        sm,
        rx,
        status_tx,
        notify,
        max_promote_behind: u64::from(settings.max_replicate_items),
        tick_ms,
        dir,
        pending: Pending::new(
            cfg.limits.max_pending_writes as usize,
            cfg.limits.max_pending_write_bytes,
        ),
        reads: Reads::new(),
        persist: Persistence::new(settings.sync_force, hs, initial.membership),
        snapshots: Snapshots::new(
            SnapshotPolicy {
                save_snapshot_seconds: settings.save_snapshot_seconds,
                save_snapshot_entries: 0,
                save_snapshot_when_close: settings.save_snapshot_when_close,
                max_keep_snapshots: max_keep,
            },
            settings.delete_logs_after_take_snapshot,
            applied,
        ),
        backups: crate::group::Backups::new(schedule, last_backup),
        observed: Observed::default(),
        last_error: String::new(),
        failed: false,
        stopping: None,
        expire_applied_at: 0,
        watches: crate::watch::WatchHub::new(g.id, cfg.watch_heartbeat_ms),
        lock_pushers: crate::locks::LockPushers::default(),
        ticks_since_prune: 0,
        metrics: metrics.clone(),
    };
    task.publish();
    tokio::spawn(task.run());
    info!(group = g.id, applied, "group started");
    Ok(GroupHandle {
        tx,
        status: status_rx,
        fsync,
        metrics,
    })
}
