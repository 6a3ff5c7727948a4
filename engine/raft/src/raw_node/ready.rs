//! The output side: [`Ready`], the work handed to the application, and the
//! reports of what it persisted and applied.

use tracing::warn;

use super::{HeldProposal, RawNode, ReadState, Role};
use crate::membership::Membership;
use crate::storage::Storage;
use crate::types::{Entry, HardState, LogId, Message, Snapshot};

/// Everything the application must do after driving the node.
///
/// Order: send `messages` at once; persist `snapshot`, then `entries` (first
/// truncating the stored log from `entries[0].index`), then `hard_state` and
/// `membership` (atomically with the hard state); only then send
/// `persisted_messages`. `committed_entries` may be applied at once (they are
/// already durable locally). Report progress with [`RawNode::advance`] or
/// [`RawNode::on_persisted`] / [`RawNode::on_applied`].
#[derive(Debug, Default)]
pub struct Ready {
    /// Messages that may be sent before anything is persisted (leader traffic).
    pub messages: Vec<Message>,
    /// A snapshot received from the leader, to install before `entries`.
    pub snapshot: Option<Snapshot>,
    /// New log entries to persist.
    pub entries: Vec<Entry>,
    /// Hard state to persist, if changed.
    pub hard_state: Option<HardState>,
    /// Configuration to persist with the hard state, if changed.
    pub membership: Option<Membership>,
    /// Messages to send only after the above is durable (votes, acks).
    pub persisted_messages: Vec<Message>,
    /// Entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Completed or failed reads.
    pub read_states: Vec<ReadState>,
    /// Outcomes of proposals held during a leader transfer.
    pub held_proposals: Vec<HeldProposal>,
}

impl Ready {
    /// The last log position this ready asks to persist (last entry, or the
    /// snapshot), to pass to [`RawNode::on_persisted`].
    pub fn persist_point(&self) -> Option<LogId> {
        match self.entries.last() {
            Some(e) => Some(LogId {
                index: e.index,
                term: e.term,
            }),
            None => self.snapshot.as_ref().map(|s| LogId {
                index: s.meta.index,
                term: s.meta.term,
            }),
        }
    }

    /// Index of the last committed entry (or installed snapshot), to pass to
    /// [`RawNode::on_applied`] once applied.
    pub fn apply_point(&self) -> Option<u64> {
        match self.committed_entries.last() {
            Some(e) => Some(e.index),
            None => self.snapshot.as_ref().map(|s| s.meta.index),
        }
    }
}

impl<S: Storage> RawNode<S> {
    /// Whether [`RawNode::ready`] would return any work.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || !self.persisted_msgs.is_empty()
            || self.pending_snapshot.is_some()
            || self.log.handed < self.log.last_index()
            || self.hard_state() != self.emitted_hs
            || self.membership_dirty
            || self.committed_membership().index != self.emitted_membership_index
            || self.log.apply_handed < self.log.commit.min(self.log.persisted)
            || !self.read_states.is_empty()
            || !self.held_results.is_empty()
            || (self.role == Role::Leader && self.leader_has_sends())
    }

    /// Collect the work produced since the last call. Leader appends for new
    /// proposals are built here, so many proposals share one message per peer.
    /// Cost: one clone per entry (a `Bytes` reference count) for persistence,
    /// one per entry per follower message, one per committed entry.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            self.flush_leader();
        }
        let snapshot = self.pending_snapshot.take();
        let entries = self.log.take_unhanded();
        let hs = self.hard_state();
        let hard_state = if hs != self.emitted_hs {
            self.emitted_hs = hs;
            Some(hs)
        } else {
            None
        };
        let cm = self.committed_membership();
        let membership = if self.membership_dirty || cm.index != self.emitted_membership_index {
            let cm = cm.clone();
            self.membership_dirty = false;
            self.emitted_membership_index = cm.index;
            Some(cm)
        } else {
            None
        };
        let mut committed_entries = Vec::new();
        let apply_to = self.log.commit.min(self.log.persisted);
        if self.log.apply_handed < apply_to {
            let hi = apply_to.min(self.log.apply_handed + self.cfg.max_apply_entries as u64);
            match self.log.entries(
                self.log.apply_handed + 1,
                hi + 1,
                u64::MAX,
                &mut committed_entries,
            ) {
                Ok(()) => {
                    if let Some(e) = committed_entries.last() {
                        self.log.apply_handed = e.index;
                    }
                }
                Err(e) => {
                    warn!(group = self.cfg.group, node = self.id, error = %e, "cannot read committed entries")
                }
            }
        }
        let mut messages = std::mem::take(&mut self.msgs);
        let mut persisted_messages = std::mem::take(&mut self.persisted_msgs);
        if self.durable_term < self.term && !messages.is_empty() {
            // The term these messages carry is not yet durable.
            if persisted_messages.is_empty() {
                persisted_messages = messages;
                messages = Vec::new();
            } else {
                persisted_messages.append(&mut messages);
            }
        }
        Ready {
            messages,
            snapshot,
            entries,
            hard_state,
            membership,
            persisted_messages,
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            held_proposals: std::mem::take(&mut self.held_results),
        }
    }

    /// Report that everything up to `last` (from earlier readies, in order) is
    /// durable. Stale reports (the entry was since overwritten) are ignored.
    pub fn on_persisted(&mut self, last: LogId) {
        if self.log.on_persisted(last) && self.role == Role::Leader {
            self.maybe_commit();
        }
        self.evict();
    }

    /// Report that `hs` (from [`Ready::hard_state`]) is durable. Until the
    /// current term is durable, leader messages are moved to
    /// [`Ready::persisted_messages`]. [`RawNode::advance`] calls this.
    pub fn on_hard_state_persisted(&mut self, hs: &HardState) {
        self.durable_term = self.durable_term.max(hs.term);
        if self.won_pending && self.role == Role::Candidate && self.durable_term >= self.term {
            self.won_pending = false;
            self.become_leader();
        }
    }

    /// Report that the state machine applied everything up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        let index = index.min(self.log.apply_handed);
        if index > self.log.applied {
            self.log.applied = index;
            self.evict();
        }
    }

    /// Convenience for a synchronous loop: everything in `rd` was persisted and
    /// its committed entries (and snapshot) applied.
    pub fn advance(&mut self, rd: &Ready) {
        if let Some(hs) = &rd.hard_state {
            self.on_hard_state_persisted(hs);
        }
        if let Some(p) = rd.persist_point() {
            self.on_persisted(p);
        }
        if let Some(a) = rd.apply_point() {
            self.on_applied(a);
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    fn evict(&mut self) {
        let mut upto = self.log.applied.min(self.log.persisted);
        if self.role == Role::Leader && self.log.mem_len() <= self.cfg.max_cached_entries {
            let min_match = self
                .prs
                .iter()
                .map(|(_, pr)| pr.match_index)
                .min()
                .unwrap_or(upto);
            upto = upto.min(min_match);
        }
        if upto >= self.log.mem_first() {
            self.log.evict(upto);
        }
    }
}
