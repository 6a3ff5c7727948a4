//! A group's counters and gauges for `/metrics` that the wire status does not
//! carry: proposals, linearizable reads, replication lag per peer, log bytes,
//! snapshots and DtKV lock and TTL counts.
//!
//! The group task is the only writer; every field is a relaxed atomic, so a
//! write costs one uncontended store or add and a scrape reads them from any
//! thread without stopping the group. Gauges that follow the group's state
//! (pending proposals, lag, log bytes, KV counts) are set when the group
//! publishes its status (every tick, and on demand before a scrape).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Replication lag of a peer the leader does not replicate to (or of every
/// peer on a node that does not lead): not rendered.
const NO_LAG: u64 = u64::MAX;

/// One group's metrics outside the wire status. Created with the group, held
/// by its [`GroupHandle`](crate::shared::GroupHandle) and its task.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    /// Writes proposed on this node whose entry was applied here.
    pub(crate) proposals_committed: AtomicU64,
    /// Writes this leader took that did not commit: refused for too many
    /// pending writes, lost with leadership, dropped after a leader transfer,
    /// or cut off when the group stopped.
    pub(crate) proposals_failed: AtomicU64,
    /// Writes proposed here and not yet applied (or held by a transfer).
    pub(crate) proposals_pending: AtomicU64,
    /// Linearizable reads answered by the leader's lease.
    pub(crate) reads_lease: AtomicU64,
    /// Linearizable reads that waited for a ReadIndex round.
    pub(crate) reads_read_index: AtomicU64,
    /// `(peer, entries it lacks)` for every other server of the node's list;
    /// [`NO_LAG`] when not replicated to from here.
    replication_lag: Box<[(u32, AtomicU64)]>,
    /// Bytes of the group's log segment files.
    pub(crate) log_bytes: AtomicU64,
    pub(crate) snapshots_saved: AtomicU64,
    pub(crate) snapshots_installed: AtomicU64,
    pub(crate) snapshots_failed: AtomicU64,
    /// Duration of the last snapshot saved or installed, in microseconds.
    pub(crate) snapshot_last_micros: AtomicU64,
    /// Size of the last snapshot saved or installed.
    pub(crate) snapshot_last_bytes: AtomicU64,
    pub(crate) kv_locks_held: AtomicU64,
    pub(crate) kv_locks_waiting: AtomicU64,
    pub(crate) kv_temp_nodes: AtomicU64,
    /// `backup_interval_seconds` of the group, 0 without scheduled backups.
    pub(crate) backup_interval_seconds: u64,
    pub(crate) backups_written: AtomicU64,
    pub(crate) backups_failed: AtomicU64,
    /// Index and creation time (ms since the epoch) of the last good backup.
    pub(crate) backup_last_index: AtomicU64,
    pub(crate) backup_last_ms: AtomicU64,
}

impl GroupMetrics {
    /// Metrics of a group whose possible peers are `peers` (the other
    /// servers of the node's list). Allocates the peer table once.
    pub(crate) fn new(
        peers: impl IntoIterator<Item = u32>,
        backup_interval_seconds: u64,
    ) -> GroupMetrics {
        GroupMetrics {
            proposals_committed: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            proposals_pending: AtomicU64::new(0),
            reads_lease: AtomicU64::new(0),
            reads_read_index: AtomicU64::new(0),
            replication_lag: peers
                .into_iter()
                .map(|p| (p, AtomicU64::new(NO_LAG)))
                .collect(),
            log_bytes: AtomicU64::new(0),
            snapshots_saved: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            snapshots_failed: AtomicU64::new(0),
            snapshot_last_micros: AtomicU64::new(0),
            snapshot_last_bytes: AtomicU64::new(0),
            kv_locks_held: AtomicU64::new(0),
            kv_locks_waiting: AtomicU64::new(0),
            kv_temp_nodes: AtomicU64::new(0),
            backup_interval_seconds,
            backups_written: AtomicU64::new(0),
            backups_failed: AtomicU64::new(0),
            backup_last_index: AtomicU64::new(0),
            backup_last_ms: AtomicU64::new(0),
        }
    }

    /// Adds `n` to counter `c` (single writer: relaxed).
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets gauge `g` to `v`.
    pub(crate) fn set(g: &AtomicU64, v: u64) {
        g.store(v, Ordering::Relaxed);
    }

    /// Sets every peer's replication lag from `lag` (`None`: not replicated
    /// to from here). O(servers).
    pub(crate) fn set_replication_lag(&self, mut lag: impl FnMut(u32) -> Option<u64>) {
        for (peer, v) in self.replication_lag.iter() {
            v.store(lag(*peer).unwrap_or(NO_LAG), Ordering::Relaxed);
        }
    }

    /// A snapshot saved (`installed` false) or installed of `bytes` that
    /// took `micros`.
    pub(crate) fn snapshot_done(&self, installed: bool, bytes: u64, micros: u64) {
        let c = if installed {
            &self.snapshots_installed
        } else {
            &self.snapshots_saved
        };
        Self::add(c, 1);
        Self::set(&self.snapshot_last_bytes, bytes);
        Self::set(&self.snapshot_last_micros, micros);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPeerLabel {
    group: u32,
    peer: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabel {
    group: u32,
    kind: &'static str,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Registers the metrics of `groups` (by group id) in `reg`. Allocates one
/// family a metric; reads each atomic once.
pub(crate) fn render(reg: &mut Registry, groups: &[(u32, Arc<GroupMetrics>)]) {
    let counter = |reg: &mut Registry, name: &str, help: &str, f: fn(&GroupMetrics) -> u64| {
        let fam = Family::<GroupLabel, Counter>::default();
        for (group, m) in groups {
            fam.get_or_create(&GroupLabel { group: *group })
                .inc_by(f(m));
        }
        reg.register(name, help, fam);
    };
    let gauge = |reg: &mut Registry, name: &str, help: &str, f: fn(&GroupMetrics) -> u64| {
        let fam = Family::<GroupLabel, Gauge>::default();
        for (group, m) in groups {
            fam.get_or_create(&GroupLabel { group: *group })
                .set(gauge_value(f(m)));
        }
        reg.register(name, help, fam);
    };
    let seconds = |reg: &mut Registry, name: &str, help: &str, f: fn(&GroupMetrics) -> f64| {
        let fam = Family::<GroupLabel, Gauge<f64, AtomicU64>>::default();
        for (group, m) in groups {
            fam.get_or_create(&GroupLabel { group: *group }).set(f(m));
        }
        reg.register(name, help, fam);
    };
    counter(
        reg,
        "group_proposals_committed",
        "Writes proposed on this node whose entry was applied",
        |m| load(&m.proposals_committed),
    );
    counter(
        reg,
        "group_proposals_failed",
        "Writes the leader took that did not commit (too many pending, leadership lost, dropped, group stopped)",
        |m| load(&m.proposals_failed),
    );
    gauge(
        reg,
        "group_proposals_pending",
        "Writes proposed on this leader and not yet applied",
        |m| load(&m.proposals_pending),
    );
    let reads = Family::<ReadLabel, Counter>::default();
    for (group, m) in groups {
        for (kind, v) in [
            ("lease", load(&m.reads_lease)),
            ("read_index", load(&m.reads_read_index)),
        ] {
            reads
                .get_or_create(&ReadLabel {
                    group: *group,
                    kind,
                })
                .inc_by(v);
        }
    }
    reg.register(
        "group_reads",
        "Linearizable reads served here, by the leader's lease or through a ReadIndex round",
        reads,
    );
    let lag = Family::<GroupPeerLabel, Gauge>::default();
    for (group, m) in groups {
        for (peer, v) in m.replication_lag.iter() {
            let v = load(v);
            if v != NO_LAG {
                lag.get_or_create(&GroupPeerLabel {
                    group: *group,
                    peer: *peer,
                })
                .set(gauge_value(v));
            }
        }
    }
    reg.register(
        "group_replication_lag",
        "On the leader: entries the peer lacks (leader's last index minus the peer's match index)",
        lag,
    );
    gauge(
        reg,
        "log_bytes",
        "Bytes of the group's log segment files",
        |m| load(&m.log_bytes),
    );
    counter(reg, "snapshots_saved", "Snapshots written here", |m| {
        load(&m.snapshots_saved)
    });
    counter(
        reg,
        "snapshots_installed",
        "Snapshots received from the leader and installed",
        |m| load(&m.snapshots_installed),
    );
    counter(
        reg,
        "snapshots_failed",
        "Snapshots that could not be started or written",
        |m| load(&m.snapshots_failed),
    );
    seconds(
        reg,
        "snapshot_last_duration_seconds",
        "How long the last snapshot saved or installed took",
        |m| load(&m.snapshot_last_micros) as f64 / 1e6,
    );
    gauge(
        reg,
        "snapshot_last_bytes",
        "Size of the last snapshot saved or installed",
        |m| load(&m.snapshot_last_bytes),
    );
    gauge(reg, "kv_locks_held", "DtKV locks held", |m| {
        load(&m.kv_locks_held)
    });
    gauge(
        reg,
        "kv_locks_waiting",
        "Clients queued for DtKV locks",
        |m| load(&m.kv_locks_waiting),
    );
    gauge(
        reg,
        "kv_temp_nodes",
        "DtKV temporary nodes (values and directories with a TTL)",
        |m| load(&m.kv_temp_nodes),
    );
    gauge(
        reg,
        "backup_interval_seconds",
        "backup_interval_seconds of the group; 0 without scheduled backups",
        |m| m.backup_interval_seconds,
    );
    counter(
        reg,
        "backups_written",
        "Scheduled backups written and verified by this node",
        |m| load(&m.backups_written),
    );
    counter(
        reg,
        "backups_failed",
        "Scheduled backups that failed (snapshot, write, verify or rotation)",
        |m| load(&m.backups_failed),
    );
    gauge(
        reg,
        "backup_last_index",
        "Index of the last good scheduled backup known here (0: none)",
        |m| load(&m.backup_last_index),
    );
    seconds(
        reg,
        "backup_last_timestamp_seconds",
        "Creation time of the last good scheduled backup known here (0: none)",
        |m| load(&m.backup_last_ms) as f64 / 1e3,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_group_and_only_the_peers_replicated_to() {
        let m = Arc::new(GroupMetrics::new([2, 3], 60));
        GroupMetrics::add(&m.proposals_committed, 5);
        GroupMetrics::add(&m.reads_lease, 2);
        m.snapshot_done(false, 4096, 1_500_000);
        m.set_replication_lag(|p| (p == 2).then_some(7));
        GroupMetrics::add(&m.backups_written, 2);
        GroupMetrics::set(&m.backup_last_index, 42);
        GroupMetrics::set(&m.backup_last_ms, 1_500);
        let off = Arc::new(GroupMetrics::new([2, 3], 0));
        let mut reg = <Registry>::with_prefix("dongting");
        render(&mut reg, &[(9, m), (10, off)]);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encode");
        for line in [
            "dongting_group_proposals_committed_total{group=\"9\"} 5",
            "dongting_group_reads_total{group=\"9\",kind=\"lease\"} 2",
            "dongting_group_reads_total{group=\"9\",kind=\"read_index\"} 0",
            "dongting_group_replication_lag{group=\"9\",peer=\"2\"} 7",
            "dongting_snapshots_saved_total{group=\"9\"} 1",
            "dongting_snapshot_last_bytes{group=\"9\"} 4096",
            "dongting_snapshot_last_duration_seconds{group=\"9\"} 1.5",
            "dongting_backups_written_total{group=\"9\"} 2",
            "dongting_backups_failed_total{group=\"9\"} 0",
            "dongting_backup_last_index{group=\"9\"} 42",
            "dongting_backup_last_timestamp_seconds{group=\"9\"} 1.5",
        ] {
            assert!(out.contains(line), "{line} missing:\n{out}");
        }
        assert!(!out.contains("peer=\"3\""), "{out}");
        assert!(
            out.contains("dongting_backup_interval_seconds{group=\"9\"} 60"),
            "{out}"
        );
        assert!(
            out.contains("dongting_backup_interval_seconds{group=\"10\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("dongting_backup_last_index{group=\"10\"} 0"),
            "{out}"
        );
    }
}
