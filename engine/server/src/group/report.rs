//! What a group shows outside its task: the status copy readers see, the
//! gauges of its [`GroupMetrics`](super::GroupMetrics), and the log lines an
//! operator follows (role changes, a growing apply lag, a lost quorum,
//! membership changes applied).

use std::time::{Duration, Instant};

use dongting_raft::{Entry, EntryKind, Role};
use tracing::{info, warn};

use super::{GroupMetrics, GroupTask};
use dongting_proto::status::{GroupStatus, JointStatus, Role as StatusRole};

/// Least time between two apply-lag warnings of one group.
const APPLY_LAG_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the group task counts and remembers for its status and log lines.
#[derive(Default)]
pub(crate) struct Observed {
    /// Leader changes and vote rounds seen (published for metrics).
    leader_changes: u64,
    elections: u64,
    /// Apply lag at the last tick, and when it was last warned about.
    apply_lag_seen: u64,
    apply_lag_warned_at: Option<Instant>,
    /// As leader: fewer than a quorum of voters were connected at the last tick.
    quorum_lost: bool,
}

impl Observed {
    /// Records the apply lag seen at a tick; true when it is to be warned
    /// about: at least `threshold`, grown since the last tick, and no
    /// warning within [`APPLY_LAG_WARN_EVERY`] before `now`.
    pub(crate) fn apply_lag_warning(&mut self, lag: u64, threshold: u64, now: Instant) -> bool {
        let growing = lag > self.apply_lag_seen;
        self.apply_lag_seen = lag;
        if lag < threshold || !growing {
            return false;
        }
        if self
            .apply_lag_warned_at
            .is_some_and(|t| now.saturating_duration_since(t) < APPLY_LAG_WARN_EVERY)
        {
            return false;
        }
        self.apply_lag_warned_at = Some(now);
        true
    }
}

/// The WARN line of a growing apply lag.
pub(crate) fn log_apply_lag(group: u32, node: u32, lag: u64, commit: u64, applied: u64) {
    warn!(
        group,
        node, lag, commit, applied, "apply lag growing: committed entries wait to be applied here"
    );
}

impl GroupTask {
    /// What a status reader must see without waiting for a tick: role, term,
    /// leader, and whether the term's first entry is applied.
    pub(super) fn role_key(&self) -> (Role, u64, u64, bool) {
        let term = self.raft.term();
        let ready = self
            .raft
            .entry_term(self.sm.applied_index())
            .is_ok_and(|t| t == term);
        (self.raft.role(), term, self.raft.leader(), ready)
    }

    /// WARN, at most every [`APPLY_LAG_WARN_EVERY`], while committed entries
    /// not yet applied here number `apply_lag_warn_entries` or more and keep
    /// growing.
    pub(super) fn warn_apply_lag(&mut self) {
        let commit = self.raft.commit_index();
        let applied = self.sm.applied_index();
        let lag = commit.saturating_sub(applied);
        let threshold = self.shared.cfg.apply_lag_warn_entries;
        if self
            .observed
            .apply_lag_warning(lag, threshold, Instant::now())
        {
            log_apply_lag(self.group_id, self.shared.node_id, lag, commit, applied);
        }
    }

    /// Counts `n` writes this node took that will not commit.
    pub(super) fn proposal_failed(&self, n: u64) {
        if n > 0 {
            GroupMetrics::add(&self.metrics.proposals_failed, n);
        }
    }

    /// Sets the gauges of the group's metrics from its state now. O(servers
    /// + log segments); called every tick and before a scrape.
    pub(super) fn refresh_metrics(&mut self) {
        let m = &self.metrics;
        GroupMetrics::set(&m.proposals_pending, self.pending.len() as u64);
        GroupMetrics::set(&m.kv_locks_held, self.sm.lock_count());
        GroupMetrics::set(&m.kv_locks_waiting, self.sm.lock_waiter_count());
        GroupMetrics::set(&m.kv_temp_nodes, self.sm.temp_node_count());
        let raft = &self.raft;
        m.set_replication_lag(|peer| raft.replication_lag(u64::from(peer)));
        let bytes = self.raft.store_mut().log_mut().segment_bytes();
        GroupMetrics::set(&self.metrics.log_bytes, bytes);
    }

    /// As leader, one line when fewer than a quorum of the voters (joint
    /// aware) are connected to this node, and one when a quorum is back.
    pub(super) fn watch_quorum(&mut self) {
        if self.raft.role() != Role::Leader || self.failed {
            self.observed.quorum_lost = false;
            return;
        }
        let me = self.raft.id();
        let shared = &self.shared;
        let membership = self.raft.membership();
        let connected = |id: u64| {
            id == me
                || u32::try_from(id).ok().is_some_and(|id| {
                    crate::shared::read(&shared.peers)
                        .get(&id)
                        .is_some_and(|p| crate::shared::lock(&p.status).connected)
                })
        };
        let quorum = membership.quorum(connected);
        let (group, node, term) = (self.group_id, self.shared.node_id, self.raft.term());
        let index = self.raft.commit_index();
        if !quorum && !self.observed.quorum_lost {
            let voters: Vec<u64> = membership.members.clone();
            let reachable: Vec<u64> = voters.iter().copied().filter(|&v| connected(v)).collect();
            warn!(
                group, node, term, index, voters = ?voters, connected = ?reachable,
                "quorum lost: fewer than a majority of voters connected to the leader"
            );
            self.observed.quorum_lost = true;
        } else if quorum && self.observed.quorum_lost {
            info!(
                group,
                node, term, index, "quorum regained: a majority of voters connected to the leader"
            );
            self.observed.quorum_lost = false;
        }
    }

    /// One INFO line when a membership commit or abort entry is applied here.
    pub(super) fn log_membership_applied(&self, e: &Entry) {
        let what = match e.kind {
            EntryKind::ConfigCommit => "membership change committed",
            EntryKind::ConfigAbort => "membership change aborted",
            _ => return,
        };
        let prepare_index = dongting_raft::decode_prepare_index(&e.data).unwrap_or(0);
        let m = self.raft.membership();
        info!(
            group = self.group_id,
            node = self.shared.node_id,
            term = e.term,
            index = e.index,
            prepare_index,
            members = ?m.members,
            observers = ?m.observers,
            "{what}"
        );
    }

    /// One INFO line per change an operator follows: a new or lost leader,
    /// becoming an observer, the group becoming ready. (Elections and
    /// becoming leader are logged by the raft core.)
    pub(super) fn log_role_change(
        &mut self,
        old: (Role, u64, u64, bool),
        new: (Role, u64, u64, bool),
    ) {
        let (role, term, leader, ready) = new;
        let (group, node) = (self.group_id, self.shared.node_id);
        if role == Role::Candidate && (old.0 != Role::Candidate || term != old.1) {
            self.observed.elections += 1;
        }
        if leader != old.2 && leader != 0 {
            self.observed.leader_changes += 1;
        }
        if leader != old.2 {
            if leader == 0 {
                info!(group, node, term, previous_leader = old.2, "leader lost");
            } else if role != Role::Leader {
                info!(group, node, term, leader, role = ?role, "following a new leader");
            }
        }
        if role != old.0 && role == Role::Observer {
            info!(group, node, term, "became observer");
        }
        if ready && !old.3 {
            info!(
                group,
                node,
                term,
                applied = self.sm.applied_index(),
                "group ready: the leader's term has an applied entry here"
            );
        }
    }

    /// Builds and publishes the status copy readers see.
    pub(crate) fn publish(&self) {
        let s = self.raft.status();
        let role = if self.failed || self.stopping.is_some() {
            StatusRole::Stopped
        } else {
            match s.role {
                Role::Leader => StatusRole::Leader,
                Role::Candidate | Role::PreCandidate => StatusRole::Candidate,
                Role::Observer => StatusRole::Observer,
                Role::Removed => StatusRole::Stopped,
                Role::Follower => StatusRole::Follower,
            }
        };
        let applied = self.sm.applied_index();
        let ready = s.leader != 0
            && !self.failed
            && self
                .raft
                .entry_term(applied)
                .map(|t| t == s.term)
                .unwrap_or(false);
        let st = GroupStatus {
            group_id: self.group_id,
            node_id: self.shared.node_id,
            role: Some(role),
            term: s.term,
            leader_id: s.leader as u32,
            commit_index: s.commit,
            applied_index: applied,
            last_log_index: s.last_index,
            apply_lag: s.commit.saturating_sub(applied),
            members: s.membership.members.iter().map(|&i| i as u32).collect(),
            observers: s.membership.observers.iter().map(|&i| i as u32).collect(),
            joint: s.membership.joint.as_ref().map(|j| JointStatus {
                prepare_index: j.prepare_index,
                members: j.target.members.iter().map(|&i| i as u32).collect(),
                observers: j.target.observers.iter().map(|&i| i as u32).collect(),
            }),
            membership_index: s.membership.index,
            last_error: self.last_error.clone(),
            ready,
            snapshot_index: self.snapshots.last_index,
            leader_service: if s.leader == 0 {
                None
            } else {
                self.shared.service_endpoint(s.leader as u32)
            },
            leader_changes: self.observed.leader_changes,
            elections: self.observed.elections,
            keys: self.sm.node_count() as u64,
            sessions: self.sm.session_count() as u64,
            watches: self.watches.count() as u64,
            backup_index: self.backups.last_index,
            backup_ms: self.backups.last_ms,
        };
        self.status_tx.send_if_modified(|old| {
            if *old != st {
                *old = st;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Observed;

    #[test]
    fn apply_lag_is_warned_from_the_threshold_when_growing_at_most_every_10_s() {
        let mut o = Observed::default();
        let t0 = Instant::now();
        assert!(!o.apply_lag_warning(4, 5, t0), "below the threshold");
        assert!(o.apply_lag_warning(5, 5, t0), "at it and grown");
        assert!(
            !o.apply_lag_warning(9, 5, t0 + Duration::from_secs(1)),
            "too soon"
        );
        assert!(
            !o.apply_lag_warning(9, 5, t0 + Duration::from_secs(11)),
            "not growing"
        );
        assert!(o.apply_lag_warning(10, 5, t0 + Duration::from_secs(12)));
    }
}
