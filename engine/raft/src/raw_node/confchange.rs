//! Configuration changes by joint consensus: the admin operations that enter
//! (prepare), leave (commit) or abandon (abort) a joint configuration, applying
//! configuration entries as they are appended, rolling them back when their
//! entries are truncated, the configuration history, and what a change means
//! for this node's role and the leader's peers.
//!
//! The configuration types and their encoding live in [`crate::membership`].

use tracing::{info, warn};

use super::RawNode;
use super::Role;
use crate::error::{AdminError, DecodeError};
use crate::membership::{
    ConfigTarget, JointConfig, Membership, Resolution, decode_prepare_index, encode_prepare_index,
};
use crate::storage::Storage;
use crate::types::{Entry, EntryKind, LogId, NONE, NodeId};

/// Outcome of an admin operation that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    /// A new configuration entry was appended at this index.
    Appended(LogId),
    /// The same operation is already in the log at this index, not yet committed.
    AlreadyPending(u64),
    /// The operation already took effect (by the entry at this index); nothing
    /// was appended.
    AlreadyDone(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PendingOp {
    Prepare(ConfigTarget),
    Commit(u64),
    Abort(u64),
}

impl<S: Storage> RawNode<S> {
    /// Start a joint-consensus change to `members` / `observers` (leader only).
    /// Repeating the same prepare is a no-op reported as `AlreadyPending` or
    /// `AlreadyDone`.
    pub fn prepare_membership(
        &mut self,
        members: &[NodeId],
        observers: &[NodeId],
    ) -> Result<AdminOutcome, AdminError> {
        self.check_leader_admin()?;
        let target = ConfigTarget::new(members, observers)
            .map_err(|e| AdminError::InvalidConfig(decode_msg(&e)))?;
        if let Some((idx, op)) = &self.pending_op
            && *idx > self.log.commit
        {
            return if *op == PendingOp::Prepare(target) {
                Ok(AdminOutcome::AlreadyPending(*idx))
            } else {
                Err(AdminError::ChangeInProgress)
            };
        }
        if let Some(j) = &self.membership.joint {
            return if j.target == target {
                Ok(AdminOutcome::AlreadyDone(j.prepare_index))
            } else {
                Err(AdminError::ChangeInProgress)
            };
        }
        if self.pending_config_index > self.log.commit {
            return Err(AdminError::ChangeInProgress);
        }
        if self.membership.members == target.members
            && self.membership.observers == target.observers
        {
            return Ok(AdminOutcome::AlreadyDone(self.membership.index));
        }
        let data = target.encode();
        let id = self.append_entry(EntryKind::ConfigPrepare, data);
        self.pending_op = Some((id.index, PendingOp::Prepare(target)));
        info!(
            group = self.cfg.group,
            node = self.id,
            term = self.term,
            index = id.index,
            "membership prepare appended"
        );
        Ok(AdminOutcome::Appended(id))
    }

    /// Finish the joint phase started at `prepare_index`, moving to its target
    /// (leader only). Refused until a quorum of the target members has applied
    /// the prepare entry. Idempotent.
    pub fn commit_membership(&mut self, prepare_index: u64) -> Result<AdminOutcome, AdminError> {
        self.check_leader_admin()?;
        if let Some((idx, op)) = &self.pending_op
            && *idx > self.log.commit
        {
            return if *op == PendingOp::Commit(prepare_index) {
                Ok(AdminOutcome::AlreadyPending(*idx))
            } else {
                Err(AdminError::ChangeInProgress)
            };
        }
        let Some(j) = &self.membership.joint else {
            return match self.membership.last_resolution {
                Some(r) if r.prepare_index == prepare_index && r.committed => {
                    Ok(AdminOutcome::AlreadyDone(self.membership.index))
                }
                Some(r) if r.prepare_index == prepare_index => {
                    Err(AdminError::Aborted(prepare_index))
                }
                _ => Err(AdminError::NoSuchPrepare(prepare_index)),
            };
        };
        if j.prepare_index != prepare_index {
            return Err(AdminError::NoSuchPrepare(prepare_index));
        }
        if self.pending_config_index > self.log.commit {
            return Err(AdminError::ChangeInProgress);
        }
        let id = self.id;
        let my_applied = self.log.applied;
        let prs = &self.prs;
        let applied_quorum = {
            let n = j
                .target
                .members
                .iter()
                .filter(|m| {
                    let a = if **m == id {
                        my_applied
                    } else {
                        prs.iter()
                            .find(|(p, _)| p == *m)
                            .map_or(0, |(_, pr)| pr.applied)
                    };
                    a >= prepare_index
                })
                .count();
            n * 2 > j.target.members.len()
        };
        if !applied_quorum {
            return Err(AdminError::NotApplied { prepare_index });
        }
        let lid = self.append_entry(EntryKind::ConfigCommit, encode_prepare_index(prepare_index));
        self.pending_op = Some((lid.index, PendingOp::Commit(prepare_index)));
        info!(
            group = self.cfg.group,
            node = self.id,
            term = self.term,
            index = lid.index,
            prepare_index,
            "membership commit appended"
        );
        Ok(AdminOutcome::Appended(lid))
    }

    /// Abandon the joint phase and return to the old configuration (leader
    /// only). Idempotent; when no change runs it reports `AlreadyDone`.
    pub fn abort_membership(&mut self) -> Result<AdminOutcome, AdminError> {
        self.check_leader_admin()?;
        if let Some((idx, op)) = &self.pending_op
            && *idx > self.log.commit
        {
            return if matches!(op, PendingOp::Abort(_)) {
                Ok(AdminOutcome::AlreadyPending(*idx))
            } else {
                Err(AdminError::ChangeInProgress)
            };
        }
        let Some(j) = &self.membership.joint else {
            return Ok(AdminOutcome::AlreadyDone(self.membership.index));
        };
        if self.pending_config_index > self.log.commit {
            return Err(AdminError::ChangeInProgress);
        }
        let p = j.prepare_index;
        let lid = self.append_entry(EntryKind::ConfigAbort, encode_prepare_index(p));
        self.pending_op = Some((lid.index, PendingOp::Abort(p)));
        info!(
            group = self.cfg.group,
            node = self.id,
            term = self.term,
            index = lid.index,
            prepare_index = p,
            "membership abort appended"
        );
        Ok(AdminOutcome::Appended(lid))
    }

    fn check_leader_admin(&self) -> Result<(), AdminError> {
        if self.role != Role::Leader {
            return Err(AdminError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(AdminError::TransferInProgress);
        }
        Ok(())
    }

    /// The latest configuration at or below the commit index: the one persisted
    /// with the hard state. Later (uncommitted) ones are rebuilt from the log on
    /// restart, so a truncation can always roll them back.
    pub(super) fn committed_membership(&self) -> &Membership {
        let commit = self.log.commit;
        if self.membership.index <= commit {
            return &self.membership;
        }
        self.history
            .iter()
            .rev()
            .find(|m| m.index <= commit)
            .unwrap_or(&self.membership)
    }

    /// The configuration in force at `index`, if the history still holds it.
    pub(super) fn config_at(&self, index: u64) -> Option<&Membership> {
        self.history
            .iter()
            .chain(std::iter::once(&self.membership))
            .rev()
            .find(|m| m.index <= index)
    }

    pub(super) fn apply_config(&mut self, e: &Entry) {
        let mut m = self.membership.clone();
        match e.kind {
            EntryKind::ConfigPrepare => {
                let Ok(target) = ConfigTarget::decode(&e.data) else {
                    warn!(
                        group = self.cfg.group,
                        node = self.id,
                        index = e.index,
                        "malformed prepare entry ignored"
                    );
                    return;
                };
                if m.joint.is_some() {
                    warn!(
                        group = self.cfg.group,
                        node = self.id,
                        index = e.index,
                        "prepare while joint ignored"
                    );
                    return;
                }
                m.joint = Some(JointConfig {
                    prepare_index: e.index,
                    target,
                });
            }
            EntryKind::ConfigCommit | EntryKind::ConfigAbort => {
                let Ok(p) = decode_prepare_index(&e.data) else {
                    warn!(
                        group = self.cfg.group,
                        node = self.id,
                        index = e.index,
                        "malformed config entry ignored"
                    );
                    return;
                };
                let Some(j) = m.joint.take() else {
                    warn!(
                        group = self.cfg.group,
                        node = self.id,
                        index = e.index,
                        "config resolution while not joint"
                    );
                    return;
                };
                if j.prepare_index != p {
                    warn!(
                        group = self.cfg.group,
                        node = self.id,
                        index = e.index,
                        p,
                        "config resolution of another prepare"
                    );
                    return;
                }
                let committed = e.kind == EntryKind::ConfigCommit;
                if committed {
                    m.members = j.target.members;
                    m.observers = j.target.observers;
                }
                m.last_resolution = Some(Resolution {
                    prepare_index: p,
                    committed,
                });
            }
            _ => return,
        }
        m.index = e.index;
        info!(
            group = self.cfg.group, node = self.id,
            index = e.index,
            kind = ?e.kind,
            members = ?m.members,
            observers = ?m.observers,
            joint_members = ?m.joint.as_ref().map(|j| &j.target.members),
            joint_observers = ?m.joint.as_ref().map(|j| &j.target.observers),
            "configuration changed"
        );
        let old = std::mem::replace(&mut self.membership, m);
        self.history.push(old);
        if self.history.len() > 8 {
            self.trim_config_history();
        }
        self.after_config_change();
    }

    /// Forget configurations older than the one in force at the log start.
    pub(super) fn trim_config_history(&mut self) {
        let start = self.log.start.index;
        if let Some(pos) = self.history.iter().rposition(|m| m.index <= start) {
            self.history.drain(..pos);
        }
    }

    /// Undo configuration entries at or after `from` (their entries are being
    /// truncated away).
    pub(super) fn rollback_config(&mut self, from: u64) {
        let mut changed = false;
        while self.membership.index >= from {
            let Some(prev) = self.history.pop() else {
                warn!(
                    group = self.cfg.group,
                    node = self.id,
                    from,
                    "no earlier configuration to roll back to"
                );
                break;
            };
            info!(
                group = self.cfg.group,
                node = self.id,
                from,
                index = prev.index,
                "configuration rolled back"
            );
            self.membership = prev;
            changed = true;
        }
        if changed {
            self.after_config_change();
        }
    }

    /// Replace the configuration with a snapshot's.
    pub(super) fn restore_config(&mut self, membership: Membership) {
        self.history.clear();
        self.membership = membership;
        self.membership_dirty = true;
        self.role = self.passive_role();
    }

    fn after_config_change(&mut self) {
        if self.role == Role::Leader {
            // A leader outside the new voters keeps leading (not counting itself)
            // until the change commits; see `commit_to`.
            self.rebuild_progress();
            if let Some(t) = &self.transfer
                && !self.membership.is_voter(t.target)
            {
                self.end_transfer();
            }
        } else {
            let passive = self.passive_role();
            let voter_role = matches!(
                self.role,
                Role::Follower | Role::PreCandidate | Role::Candidate
            );
            if passive == Role::Follower && !voter_role {
                self.role = Role::Follower;
                self.reset_election_timer();
            } else if passive != Role::Follower {
                self.role = passive;
                self.votes.clear();
            }
        }
    }

    /// The commit index advanced from `was`. On a follower, committing the
    /// latest configuration ends campaign rights that came from the previous
    /// one. A leader that the committed configuration removed steps down.
    /// Returns whether it did.
    pub(super) fn config_on_commit(&mut self, was: u64) -> bool {
        let index = self.log.commit;
        if self.role != Role::Leader {
            if was < self.membership.index && index >= self.membership.index {
                self.after_config_change();
            }
            return false;
        }
        if !self.membership.is_voter(self.id) && index >= self.membership.index {
            // The configuration that removed this leader is committed: the new
            // members hold it in their logs and elect among themselves.
            info!(
                group = self.cfg.group,
                node = self.id,
                term = self.term,
                "leader removed from voters, stepping down"
            );
            self.become_follower(self.term, NONE);
            return true;
        }
        false
    }

    /// Stop replicating to removed nodes once they were told that the
    /// configuration removing them is committed.
    pub(super) fn drop_removed_peers(&mut self) {
        let cfg_index = self.membership.index;
        let m = &self.membership;
        if cfg_index <= self.log.commit && self.prs.iter().any(|(id, _)| !m.contains(*id)) {
            self.prs
                .retain(|(id, pr)| m.contains(*id) || pr.sent_commit < cfg_index);
        }
    }
}

fn decode_msg(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Invalid(s) => s,
        _ => "malformed configuration",
    }
}
