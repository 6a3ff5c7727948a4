//! Log replication: proposals, appends and their acknowledgements, heartbeats,
//! follower progress and commit advancement.

use bytes::Bytes;
use tracing::{debug, warn};

use super::RawNode;
use super::Role;
use crate::config::Mutation;
use crate::error::{ProposeError, StorageError};
use crate::progress::{Progress, ProgressState};
use crate::storage::Storage;
use crate::types::{Entry, EntryKind, LogId, Message, MessageBody, NodeId};

/// Outcome of a proposal accepted by the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposed {
    /// Appended to the leader's log at this position.
    Appended(LogId),
    /// Held while a leader transfer runs; the outcome arrives later in
    /// [`Ready::held_proposals`](super::Ready::held_proposals) under this id.
    Held(u64),
}

impl<S: Storage> RawNode<S> {
    /// Propose application data. On the leader it is appended at once (and sent
    /// with the next [`RawNode::ready`]); during a leader transfer it is held.
    /// Cost: one entry push, no allocation beyond the log's amortized growth.
    pub fn propose(&mut self, data: Bytes) -> Result<Proposed, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let size = data.len() as u64;
        if size > self.cfg.max_entry_bytes {
            return Err(ProposeError::TooLarge {
                size,
                max: self.cfg.max_entry_bytes,
            });
        }
        if self.transfer.is_some() {
            return self.hold_proposal(data);
        }
        Ok(Proposed::Appended(
            self.append_entry(EntryKind::Normal, data),
        ))
    }

    pub(super) fn rebuild_progress(&mut self) {
        let next = self.log.last_index() + 1;
        let mut prs = Vec::new();
        // Until the latest configuration commits, keep replicating to the nodes
        // it removes so that they learn of their removal and stop campaigning.
        let mut ids = self.membership.all_nodes();
        if self.membership.index > self.log.commit {
            ids.extend(self.committed_membership().all_nodes());
            ids.sort_unstable();
            ids.dedup();
        }
        for id in ids {
            if id == self.id {
                continue;
            }
            let pr = match self.prs.iter().position(|(p, _)| *p == id) {
                Some(pos) => self.prs.swap_remove(pos).1,
                None => Progress::new(next),
            };
            prs.push((id, pr));
        }
        self.prs = prs;
    }

    pub(super) fn append_entry(&mut self, kind: EntryKind, data: Bytes) -> LogId {
        let index = self.log.last_index() + 1;
        let term = self.term;
        let e = Entry {
            term,
            index,
            kind,
            data,
        };
        if kind.is_config() {
            self.pending_config_index = index;
            self.apply_config(&e);
        }
        self.log.push(e);
        if self.single_voter() {
            self.maybe_commit();
        }
        LogId { index, term }
    }

    pub(super) fn single_voter(&self) -> bool {
        self.prs.is_empty() || self.membership.members.len() == 1 && self.membership.joint.is_none()
    }

    pub(super) fn maybe_commit(&mut self) {
        let self_match = if self.cfg.mutated(Mutation::CountUnpersistedSelf) {
            self.log.last_index()
        } else {
            self.log.persisted
        };
        let id = self.id;
        let prs = &self.prs;
        let q = self.membership.quorum_min(&mut self.scratch, |v| {
            if v == id {
                self_match
            } else {
                prs.iter()
                    .find(|(p, _)| *p == v)
                    .map_or(0, |(_, pr)| pr.match_index)
            }
        });
        if q > self.log.commit && q != u64::MAX {
            let term_ok = self.log.term(q).is_ok_and(|t| t == self.term);
            if term_ok || self.cfg.mutated(Mutation::CommitPreviousTerm) {
                self.commit_to(q);
            }
        }
    }

    pub(super) fn commit_to(&mut self, index: u64) {
        debug_assert!(index <= self.log.last_index());
        let was = self.log.commit;
        self.log.commit = index;
        if !self.config_on_commit(was) && self.role == Role::Leader {
            self.check_reads();
        }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn bcast_heartbeat(&mut self) {
        self.heartbeat_deadline_ms = self.now_ms + self.cfg.heartbeat_interval_ms;
        self.read_heartbeat = false;
        let seq = self.next_seq();
        let send_ms = self.now_ms;
        let commit = self.log.commit;
        for i in 0..self.prs.len() {
            let (to, pr) = &mut self.prs[i];
            let to = *to;
            let c = commit.min(pr.match_index);
            pr.sent_commit = pr.sent_commit.max(c);
            let m = Message {
                from: self.id,
                to,
                term: self.term,
                body: MessageBody::Heartbeat {
                    commit: c,
                    seq,
                    send_ms,
                },
            };
            self.msgs.push(m);
        }
    }

    pub(super) fn leader_has_sends(&self) -> bool {
        let last = self.log.last_index();
        let commit = self.log.commit;
        let (max_msgs, max_bytes) = (self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
        self.read_heartbeat
            || self.prs.iter().any(|(_, pr)| {
                let can_send = match pr.state {
                    ProgressState::Snapshot => false,
                    ProgressState::Probe => !pr.probe_sent,
                    ProgressState::Replicate => !pr.inflight_full(max_msgs, max_bytes),
                };
                can_send
                    && (pr.next_index <= last
                        || pr.sent_commit < commit.min(pr.match_index.max(pr.next_index - 1)))
            })
    }

    pub(super) fn flush_leader(&mut self) {
        if self.read_heartbeat {
            self.bcast_heartbeat();
        }
        for i in 0..self.prs.len() {
            let mut rounds = 0;
            while self.send_append(i) {
                rounds += 1;
                if rounds >= self.cfg.max_inflight_msgs {
                    break;
                }
            }
        }
        self.drop_removed_peers();
    }

    /// Send one append to peer `i` if there is something to send and the window
    /// allows it. Returns whether a message with entries was sent in replicate
    /// state (so the caller may send another).
    fn send_append(&mut self, i: usize) -> bool {
        let last = self.log.last_index();
        let commit = self.log.commit;
        let (to, pr) = &self.prs[i];
        let to = *to;
        match pr.state {
            ProgressState::Snapshot => return false,
            ProgressState::Probe if pr.probe_sent => return false,
            ProgressState::Replicate
                if pr.inflight_full(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes) =>
            {
                return false;
            }
            _ => {}
        }
        let has_entries = pr.next_index <= last;
        let needs_commit = pr.sent_commit < commit.min(pr.match_index.max(pr.next_index - 1));
        if !has_entries && !needs_commit {
            return false;
        }
        let prev_index = pr.next_index - 1;
        let prev_term = match self.log.term(prev_index) {
            Ok(t) => t,
            Err(StorageError::Compacted(_)) => {
                self.start_snapshot(i);
                return false;
            }
            Err(e) => {
                warn!(group = self.cfg.group, node = self.id, peer = to, error = %e, "cannot read term for append");
                return false;
            }
        };
        let mut entries = Vec::new();
        if has_entries {
            let hi = last.min(prev_index + self.cfg.max_append_entries as u64);
            let room = self
                .cfg
                .max_inflight_bytes
                .saturating_sub(pr.inflight_bytes());
            let max_bytes = self.cfg.max_append_bytes.min(room.max(1));
            match self
                .log
                .entries(pr.next_index, hi + 1, max_bytes, &mut entries)
            {
                Ok(()) => {}
                Err(StorageError::Compacted(_)) => {
                    self.start_snapshot(i);
                    return false;
                }
                Err(e) => {
                    warn!(group = self.cfg.group, node = self.id, peer = to, error = %e, "cannot read entries for append");
                    return false;
                }
            }
        }
        let n = entries.len() as u64;
        let bytes: u64 = entries.iter().map(Entry::size_bytes).sum();
        let seq = self.next_seq();
        let send_ms = self.now_ms;
        let pr = &mut self.prs[i].1;
        pr.sent_commit = commit;
        let more = match pr.state {
            ProgressState::Replicate => {
                if n > 0 {
                    pr.next_index += n;
                    pr.add_inflight(pr.next_index - 1, n, bytes);
                }
                n > 0
            }
            _ => {
                pr.probe_sent = true;
                false
            }
        };
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body: MessageBody::Append {
                prev_index,
                prev_term,
                commit,
                entries,
                seq,
                send_ms,
            },
        });
        more
    }

    pub(super) fn peer(&self, id: NodeId) -> Option<usize> {
        self.prs.iter().position(|(p, _)| *p == id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        reject: bool,
        index: u64,
        hint_index: u64,
        hint_term: u64,
        applied: u64,
        seq: u64,
        send_ms: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.peer(from) else {
            return;
        };
        self.prs[i].1.ack(seq, send_ms, applied);
        if reject {
            let pr = &mut self.prs[i].1;
            if pr.state == ProgressState::Probe
                && index == pr.match_index
                && index + 1 == pr.next_index
                && hint_index < pr.match_index
            {
                // The answer to the probe right after the follower's match
                // says its log ends before entries it acknowledged: its data
                // was lost (a replaced disk, a deleted directory). Replicate
                // again from where its log ends, or from a snapshot; the
                // commit index never moves back.
                warn!(
                    group = self.cfg.group,
                    node = self.id,
                    peer = from,
                    acknowledged = pr.match_index,
                    log_ends = hint_index,
                    "follower lost acknowledged entries; replicating to it again"
                );
                pr.match_index = hint_index;
                pr.match_at_heartbeat = hint_index;
                pr.next_index = hint_index + 1;
                pr.become_probe();
                self.check_reads();
                return;
            }
            let pr = &self.prs[i].1;
            if index <= pr.match_index || pr.state == ProgressState::Snapshot {
                return;
            }
            let mut probe = hint_index;
            if hint_term > 0 {
                probe = self.log.find_conflict_by_term(hint_index, hint_term);
            }
            let pr = &mut self.prs[i].1;
            if pr.state == ProgressState::Probe && index != pr.next_index - 1 {
                // Answer to an older probe.
                return;
            }
            pr.next_index = index.min(probe + 1).max(pr.match_index + 1);
            pr.become_probe();
            debug!(
                group = self.cfg.group,
                node = self.id,
                peer = from,
                next = pr.next_index,
                "append rejected, probing"
            );
        } else {
            let pr = &mut self.prs[i].1;
            let news = pr.update(index);
            if pr.state == ProgressState::Probe && (news || pr.match_index + 1 == pr.next_index) {
                pr.become_replicate();
            } else if pr.state == ProgressState::Probe {
                pr.probe_sent = false;
            }
            if news {
                self.maybe_commit();
                self.maybe_send_timeout_now(from);
            }
        }
        self.check_reads();
    }

    pub(super) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        applied: u64,
        seq: u64,
        send_ms: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.peer(from) else {
            return;
        };
        let last = self.log.last_index();
        let pr = &mut self.prs[i].1;
        pr.ack(seq, send_ms, applied);
        match pr.state {
            ProgressState::Probe => pr.probe_sent = false,
            ProgressState::Replicate => {
                if pr.match_index < last && pr.match_index == pr.match_at_heartbeat {
                    // No progress for a heartbeat round: an append was lost.
                    pr.next_index = pr.match_index + 1;
                    pr.become_probe();
                }
                pr.match_at_heartbeat = pr.match_index;
            }
            ProgressState::Snapshot => {
                if pr.snapshot.as_ref().is_some_and(|s| s.in_flight) {
                    // Resend the chunk at the confirmed offset.
                    self.send_snapshot_chunk(i);
                }
            }
        }
        self.maybe_send_timeout_now(from);
        self.check_reads();
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        term: u64,
        mut prev_index: u64,
        mut prev_term: u64,
        commit: u64,
        mut entries: Vec<Entry>,
        seq: u64,
        send_ms: u64,
    ) {
        if self.role == Role::Leader {
            warn!(
                group = self.cfg.group,
                node = self.id,
                from,
                term,
                "append from another leader in my term"
            );
            return;
        }
        self.follow(from);
        let applied = self.log.applied;
        if prev_index < self.log.commit {
            // The prefix up to our commit index is known to match the leader.
            let skip = (self.log.commit - prev_index) as usize;
            if skip >= entries.len() {
                let index = self.log.commit;
                let body = MessageBody::AppendResponse {
                    reject: false,
                    index,
                    hint_index: 0,
                    hint_term: 0,
                    applied,
                    seq,
                    send_ms,
                };
                self.send(from, body);
                return;
            }
            entries.drain(..skip);
            prev_index = self.log.commit;
            prev_term = match self.log.term(prev_index) {
                Ok(t) => t,
                Err(e) => {
                    warn!(group = self.cfg.group, node = self.id, error = %e, "cannot read committed term");
                    return;
                }
            };
        }
        if !self.log.match_term(prev_index, prev_term) {
            let hint = self.log.find_conflict_by_term(prev_index, prev_term);
            let hint_term = self.log.term(hint).unwrap_or(0);
            debug!(
                group = self.cfg.group,
                node = self.id,
                prev_index,
                prev_term,
                hint,
                hint_term,
                "append rejected"
            );
            let body = MessageBody::AppendResponse {
                reject: true,
                index: prev_index,
                hint_index: hint,
                hint_term,
                applied,
                seq,
                send_ms,
            };
            self.send(from, body);
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        let last = self.log.last_index();
        let mut skip = 0;
        for e in &entries {
            if e.index > last {
                break;
            }
            if !self.log.match_term(e.index, e.term) {
                self.log.truncate(e.index);
                self.rollback_config(e.index);
                break;
            }
            skip += 1;
        }
        for e in entries.drain(skip..) {
            if e.kind.is_config() {
                self.apply_config(&e);
            }
            self.log.push(e);
        }
        let c = commit.min(last_new);
        if c > self.log.commit {
            self.commit_to(c);
        }
        let body = MessageBody::AppendResponse {
            reject: false,
            index: last_new,
            hint_index: 0,
            hint_term: 0,
            applied,
            seq,
            send_ms,
        };
        self.send(from, body);
    }

    /// A heartbeat from the leader of this term: follow it, learn its commit
    /// index as far as the local log reaches, and acknowledge.
    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: u64, seq: u64, send_ms: u64) {
        if self.role == Role::Leader {
            return;
        }
        self.follow(from);
        if commit > self.log.commit && commit <= self.log.last_index() {
            self.commit_to(commit);
        }
        let applied = self.log.applied;
        self.send(
            from,
            MessageBody::HeartbeatResponse {
                applied,
                seq,
                send_ms,
            },
        );
    }
}
