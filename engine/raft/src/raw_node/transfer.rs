//! Leader transfer: catching the target up, `TimeoutNow`, holding proposals
//! meanwhile, and the target's campaign.

use bytes::Bytes;
use tracing::{info, warn};

use super::RawNode;
use super::Role;
use super::election::CampaignKind;
use super::replication::Proposed;
use crate::error::{AdminError, ProposeError};
use crate::storage::Storage;
use crate::types::{EntryKind, LogId, MessageBody, NodeId};

/// Outcome of a proposal that was held during a leader transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldProposal {
    /// Id returned in [`Proposed::Held`].
    pub id: u64,
    /// Where it was appended, or why it failed.
    pub result: Result<LogId, ProposeError>,
}

pub(super) struct Transfer {
    pub(super) target: NodeId,
    pub(super) deadline_ms: u64,
}

impl<S: Storage> RawNode<S> {
    /// Hand leadership to voter `target` within `timeout_ms` (leader only).
    /// Proposals are held meanwhile; if the transfer times out this node stays
    /// leader and appends them. Repeating a running transfer is a no-op.
    pub fn transfer_leader(&mut self, target: NodeId, timeout_ms: u64) -> Result<(), AdminError> {
        if self.role != Role::Leader {
            return Err(AdminError::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id {
            return Ok(());
        }
        if !self.membership.is_voter(target) {
            return Err(AdminError::BadTransferTarget(target));
        }
        if let Some(t) = &self.transfer {
            return if t.target == target {
                Ok(())
            } else {
                Err(AdminError::TransferInProgress)
            };
        }
        info!(
            group = self.cfg.group,
            node = self.id,
            term = self.term,
            target,
            "leader transfer started"
        );
        self.transfer = Some(Transfer {
            target,
            deadline_ms: self.now_ms + timeout_ms,
        });
        self.maybe_send_timeout_now(target);
        Ok(())
    }

    /// On the leader, the voter best placed to take over: a voter this node
    /// heard from within an election timeout before one it did not, then the
    /// highest match index, then the lowest id. `None` elsewhere, and when no
    /// other voter exists (a single-voter group). Cost: O(peers).
    pub fn transfer_candidate(&self) -> Option<NodeId> {
        if self.role != Role::Leader {
            return None;
        }
        let now = self.now_ms;
        let window = self.cfg.elect_timeout_ms;
        self.prs
            .iter()
            .filter(|(id, _)| *id != self.id && self.membership.is_voter(*id))
            .map(|(id, pr)| {
                let live = pr.recent_active
                    || (pr.acked_send_ms > 0 && now.saturating_sub(pr.acked_send_ms) < window);
                (live, pr.match_index, std::cmp::Reverse(*id))
            })
            .max()
            .map(|(_, _, std::cmp::Reverse(id))| id)
    }

    /// Leader timer: give up a transfer that did not finish in time; this node
    /// stays leader.
    pub(super) fn tick_transfer(&mut self) {
        let now = self.now_ms;
        if self.transfer.as_ref().is_some_and(|t| now >= t.deadline_ms) {
            warn!(
                group = self.cfg.group,
                node = self.id,
                term = self.term,
                "leader transfer timed out"
            );
            self.end_transfer();
        }
    }

    /// Hold a proposal while a transfer runs; it is appended when the transfer
    /// ends with this node still leading, and failed if this node steps down.
    pub(super) fn hold_proposal(&mut self, data: Bytes) -> Result<Proposed, ProposeError> {
        if self.held.len() >= self.cfg.max_held_proposals {
            return Err(ProposeError::TransferBacklogFull);
        }
        let id = self.next_held_id;
        self.next_held_id += 1;
        self.held.push_back((id, data));
        Ok(Proposed::Held(id))
    }

    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let Some(t) = &self.transfer else {
            return;
        };
        if t.target != peer {
            return;
        }
        let Some(i) = self.peer(peer) else {
            return;
        };
        if self.prs[i].1.match_index == self.log.last_index() {
            info!(
                group = self.cfg.group,
                node = self.id,
                term = self.term,
                target = peer,
                "sending TimeoutNow"
            );
            // The target may win an election that bypasses leader stickiness, so
            // this leader's lease can no longer be trusted in this term.
            self.lease_disabled = true;
            self.send(peer, MessageBody::TimeoutNow);
        }
    }

    pub(super) fn end_transfer(&mut self) {
        self.transfer = None;
        while let Some((id, data)) = self.held.pop_front() {
            let lid = self.append_entry(EntryKind::Normal, data);
            self.held_results.push(HeldProposal {
                id,
                result: Ok(lid),
            });
        }
    }

    /// Fail every held proposal: this node stopped leading (`leader` is the new
    /// leader, if known).
    pub(super) fn fail_held(&mut self, leader: NodeId) {
        while let Some((id, _)) = self.held.pop_front() {
            let err = ProposeError::NotLeader { leader };
            self.held_results.push(HeldProposal {
                id,
                result: Err(err),
            });
        }
    }

    /// The leader hands leadership to this node: campaign at once, bypassing
    /// pre-vote and the followers' leader leases.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.can_campaign() && self.role != Role::Leader {
            info!(
                group = self.cfg.group,
                node = self.id,
                term = self.term,
                from,
                "leader transfer: campaigning now"
            );
            self.campaign(CampaignKind::Transfer);
        }
    }
}
