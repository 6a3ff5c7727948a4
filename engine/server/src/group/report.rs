//! What a group shows outside its task: the status copy readers see, and
//! the log lines an operator follows (role changes, a growing apply lag).

use std::time::{Duration, Instant};

use dongting_raft::Role;
use tracing::{info, warn};

use super::GroupTask;
use dongting_proto::status::{GroupStatus, JointStatus, Role as StatusRole};

/// Apply lag (committed, not applied entries) from which a growing lag is
/// logged at WARN.
const APPLY_LAG_WARN: u64 = 10_000;
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
    /// not yet applied here number [`APPLY_LAG_WARN`] or more and keep growing.
    pub(super) fn warn_apply_lag(&mut self) {
        let commit = self.raft.commit_index();
        let applied = self.sm.applied_index();
        let lag = commit.saturating_sub(applied);
        let growing = lag > self.observed.apply_lag_seen;
        self.observed.apply_lag_seen = lag;
        if lag < APPLY_LAG_WARN || !growing {
            return;
        }
        if self
            .observed
            .apply_lag_warned_at
            .is_some_and(|t| t.elapsed() < APPLY_LAG_WARN_EVERY)
        {
            return;
        }
        self.observed.apply_lag_warned_at = Some(Instant::now());
        warn!(
            group = self.group_id,
            node = self.shared.node_id,
            lag,
            commit,
            applied,
            "apply lag growing: committed entries wait to be applied here"
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
