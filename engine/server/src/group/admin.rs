//! Admin operations on a group: leader transfer, membership changes (with
//! the check that a new voter can vote) and snapshots on request.

use dongting_net::Status;
use dongting_raft::{AdminOutcome, NodeId, Role};
use tokio::sync::oneshot;

use super::GroupTask;
use crate::inbox::{AdminOp, AdminReply};
use dongting_proto::service::AdminResponse;

impl GroupTask {
    /// Starts a snapshot for an admin request; `reply` is answered once it is
    /// saved, or at once when it cannot start or nothing is new.
    pub(super) fn admin_snapshot(&mut self, reply: oneshot::Sender<AdminReply>) {
        if self.failed {
            let _ = reply.send(Err((Status::RAFT_GROUP_STOPPED, self.last_error.clone())));
            return;
        }
        match self.snapshots.start(&self.raft, &self.sm) {
            Ok(true) => self.snapshots.waiters.push(reply),
            Ok(false) => {
                let index = self.snapshots.last_index;
                let _ = reply.send(Ok(AdminResponse {
                    index,
                    message: format!("snapshot at index {index} is current"),
                }));
            }
            Err(e) => {
                let _ = reply.send(Err((Status::SYS_ERROR, e)));
            }
        }
    }

    pub(super) fn admin(&mut self, op: AdminOp) -> AdminReply {
        if self.failed {
            return Err((Status::RAFT_GROUP_STOPPED, self.last_error.clone()));
        }
        let not_leader = |leader: NodeId| {
            (
                Status::NOT_RAFT_LEADER,
                if leader == 0 {
                    "this node is not the leader; no leader known".to_string()
                } else {
                    format!("this node is not the leader; the leader is node {leader}")
                },
            )
        };
        let outcome = |o: AdminOutcome, what: &str| match o {
            AdminOutcome::Appended(id) => AdminResponse {
                index: id.index,
                message: format!("{what} appended at index {}", id.index),
            },
            AdminOutcome::AlreadyPending(i) => AdminResponse {
                index: i,
                message: format!("{what} already pending at index {i}"),
            },
            AdminOutcome::AlreadyDone(i) => AdminResponse {
                index: i,
                message: format!("{what} already in effect (index {i})"),
            },
        };
        let map_err = |e: dongting_raft::AdminError| match e {
            dongting_raft::AdminError::NotLeader { leader } => not_leader(leader),
            other => (Status::CLIENT_ERROR, other.to_string()),
        };
        let ids = |v: &[u32]| v.iter().map(|&i| i as NodeId).collect::<Vec<_>>();
        match op {
            AdminOp::TransferLeader { target, timeout_ms } => {
                self.raft
                    .transfer_leader(target as NodeId, timeout_ms.max(1))
                    .map_err(map_err)?;
                Ok(AdminResponse {
                    index: 0,
                    message: format!("leader transfer to node {target} started"),
                })
            }
            AdminOp::Prepare { members, observers } => {
                for n in members.iter().chain(&observers) {
                    if self.shared.server_address(*n).is_none() {
                        return Err((
                            Status::CLIENT_ERROR,
                            format!("node {n} is not in the servers list"),
                        ));
                    }
                }
                if self.raft.role() == Role::Leader {
                    for n in &members {
                        self.check_ready_to_vote(*n)?;
                    }
                }
                let o = self
                    .raft
                    .prepare_membership(&ids(&members), &ids(&observers))
                    .map_err(map_err)?;
                Ok(outcome(o, "prepare"))
            }
            AdminOp::Commit { prepare_index } => {
                let o = self
                    .raft
                    .commit_membership(prepare_index)
                    .map_err(map_err)?;
                Ok(outcome(o, "commit"))
            }
            AdminOp::Abort => {
                let o = self.raft.abort_membership().map_err(map_err)?;
                Ok(outcome(o, "abort"))
            }
            AdminOp::Snapshot => Err((
                Status::SYS_ERROR,
                "snapshot is handled by the group loop".into(),
            )),
        }
    }

    /// Refuses to make `node` a voter unless the leader replicates to it (it
    /// is an observer), it answered within an election timeout and it lacks at
    /// most `max_promote_behind` committed entries: a voter without the log
    /// adds nothing to the quorum and, while it catches up, can cost one.
    fn check_ready_to_vote(&self, node: u32) -> Result<(), (Status, String)> {
        let id = node as NodeId;
        if self.raft.membership().is_voter(id) {
            return Ok(());
        }
        let g = self.group_id;
        let refuse = |why: String| Err((Status::CLIENT_ERROR, why));
        let Some(lag) = self.raft.peer_lag(id) else {
            return refuse(format!(
                "node {node} does not receive group {g}'s log: add it as an observer \
                 first (prepare with --observers {node}, then commit), let it catch up, \
                 then make it a member"
            ));
        };
        let elect_ms = self.shared.cfg.elect_timeout_ms;
        match lag.silent_ms {
            None => {
                return refuse(format!(
                    "node {node} has not answered the leader of group {g} yet; \
                     make it a member once it follows the log as an observer"
                ));
            }
            Some(ms) if ms > elect_ms => {
                return refuse(format!(
                    "node {node} has not answered the leader of group {g} for {ms} ms \
                     (election timeout {elect_ms} ms); make it a member once it is back"
                ));
            }
            Some(_) => {}
        }
        if lag.behind > self.max_promote_behind {
            return refuse(format!(
                "node {node} lacks {} committed entries of group {g} (at most {} for a \
                 new voter, max_replicate_items); retry once it has caught up",
                lag.behind, self.max_promote_behind
            ));
        }
        Ok(())
    }
}
