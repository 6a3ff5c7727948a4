//! Linearizable reads: ReadIndex confirmed by a heartbeat round, lease reads
//! on a leader whose quorum was heard recently, and follower reads forwarded
//! to the leader.

use super::RawNode;
use super::Role;
use crate::config::Mutation;
use crate::error::ReadError;
use crate::storage::Storage;
use crate::types::{MessageBody, NONE, NodeId};

/// A read that may be served once the state machine has applied `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// Context given to [`RawNode::read_index`].
    pub ctx: u64,
    /// Applied index to wait for, or why the read failed.
    pub result: Result<u64, ReadError>,
}

pub(super) struct PendingRead {
    ctx: u64,
    /// `self.id` for a local read, else the follower that asked.
    from: NodeId,
    seq_needed: u64,
    index: u64,
    deadline_ms: u64,
}

impl<S: Storage> RawNode<S> {
    /// Ask for a linearizable read. The answer arrives in
    /// [`Ready::read_states`](super::Ready::read_states) under `ctx`; serve the
    /// read once the applied index reaches it. On the
    /// leader a valid lease answers at once; otherwise a heartbeat round
    /// confirms leadership (ReadIndex). Followers ask the leader.
    pub fn read_index(&mut self, ctx: u64) -> Result<(), ReadError> {
        let deadline_ms = self.now_ms + self.cfg.elect_timeout_ms;
        if self.role == Role::Leader {
            self.leader_read(self.id, ctx);
            return Ok(());
        }
        if self.leader == NONE {
            return Err(ReadError::NotLeader);
        }
        self.follower_reads.push((ctx, deadline_ms));
        self.send(self.leader, MessageBody::ReadIndex { ctx });
        Ok(())
    }

    pub(super) fn lease_valid(&self) -> bool {
        if self.cfg.mutated(Mutation::LeaseWithoutQuorum) {
            return self.log.applied >= self.noop_index;
        }
        if !self.cfg.lease_read
            || !self.cfg.check_quorum
            || self.lease_disabled
            || self.transfer.is_some()
            || self.log.applied < self.noop_index
        {
            return false;
        }
        let id = self.id;
        let now = self.now_ms;
        let prs = &self.prs;
        let mut scratch = Vec::new();
        let start = self.membership.quorum_min(&mut scratch, |v| {
            if v == id {
                now
            } else {
                prs.iter()
                    .find(|(p, _)| *p == v)
                    .map_or(0, |(_, pr)| pr.acked_send_ms)
            }
        });
        start != u64::MAX
            && now < start + self.cfg.elect_timeout_ms - self.cfg.lease_drift_margin_ms
    }

    fn leader_read(&mut self, from: NodeId, ctx: u64) {
        let index = self.log.commit.max(self.noop_index);
        if self.lease_valid() {
            self.finish_read(from, ctx, Ok(self.log.commit));
            return;
        }
        let seq_needed = self.seq + 1;
        self.reads.push_back(PendingRead {
            ctx,
            from,
            seq_needed,
            index,
            deadline_ms: self.now_ms + self.cfg.elect_timeout_ms,
        });
        if self.prs.is_empty() || self.single_voter() {
            self.check_reads();
        } else {
            self.read_heartbeat = true;
        }
    }

    pub(super) fn check_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let id = self.id;
        let prs = &self.prs;
        let acked = self.membership.quorum_min(&mut self.scratch, |v| {
            if v == id {
                u64::MAX
            } else {
                prs.iter()
                    .find(|(p, _)| *p == v)
                    .map_or(0, |(_, pr)| pr.acked_seq)
            }
        });
        // A read is answerable once leadership is confirmed after it arrived and
        // this term's first entry is committed.
        if self.log.commit < self.noop_index {
            return;
        }
        while self.reads.front().is_some_and(|r| r.seq_needed <= acked) {
            if let Some(r) = self.reads.pop_front() {
                self.finish_read(r.from, r.ctx, Ok(r.index));
            }
        }
    }

    fn finish_read(&mut self, from: NodeId, ctx: u64, result: Result<u64, ReadError>) {
        if from == self.id {
            self.read_states.push(ReadState { ctx, result });
        } else {
            self.send(
                from,
                MessageBody::ReadIndexResponse {
                    ctx,
                    index: result.ok(),
                },
            );
        }
    }

    /// A follower asks this node for a read index; only a leader answers with one.
    pub(super) fn handle_read_index(&mut self, from: NodeId, ctx: u64) {
        if self.role == Role::Leader {
            self.leader_read(from, ctx);
        } else {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index: None });
        }
    }

    /// The leader answered a read this follower forwarded.
    pub(super) fn handle_read_index_response(&mut self, ctx: u64, index: Option<u64>) {
        if let Some(pos) = self.follower_reads.iter().position(|(c, _)| *c == ctx) {
            self.follower_reads.swap_remove(pos);
            let result = index.ok_or(ReadError::NotLeader);
            self.read_states.push(ReadState { ctx, result });
        }
    }

    /// Leader timer: fail the reads that leadership was not confirmed for in time.
    pub(super) fn expire_leader_reads(&mut self) {
        let now = self.now_ms;
        while self.reads.front().is_some_and(|r| now >= r.deadline_ms) {
            if let Some(r) = self.reads.pop_front() {
                self.finish_read(r.from, r.ctx, Err(ReadError::Timeout));
            }
        }
    }

    /// Fail the forwarded reads the leader did not answer in time.
    pub(super) fn expire_follower_reads(&mut self) {
        let now = self.now_ms;
        let rs = &mut self.read_states;
        self.follower_reads.retain(|&(ctx, deadline)| {
            if now >= deadline {
                rs.push(ReadState {
                    ctx,
                    result: Err(ReadError::Timeout),
                });
                false
            } else {
                true
            }
        });
    }

    /// Fail every pending leader read: this node stopped leading.
    pub(super) fn fail_reads(&mut self) {
        while let Some(r) = self.reads.pop_front() {
            self.finish_read(r.from, r.ctx, Err(ReadError::NotLeader));
        }
    }
}
