//! Elections: terms, pre-vote and vote rounds, vote handling, and the role
//! changes they cause (follower, candidate, leader).

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::RawNode;
use super::Role;
use crate::config::Mutation;
use crate::storage::Storage;
use crate::types::{EntryKind, Message, MessageBody, NONE, NodeId};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CampaignKind {
    PreVote,
    Vote,
    Transfer,
}

impl<S: Storage> RawNode<S> {
    /// Start an election now (as if the election timer fired). Voters only.
    pub fn campaign_now(&mut self) {
        if self.role != Role::Leader {
            self.campaign(self.election_kind());
        }
    }

    /// Compare a message's term with ours. A newer term is adopted (a vote
    /// request inside a leader lease is ignored instead); a sender with a stale
    /// term is told the current one where it needs it. Returns whether the
    /// message belongs to the current term and is to be handled.
    pub(super) fn check_term(&mut self, m: &Message) -> bool {
        if m.term > self.term {
            match &m.body {
                MessageBody::RequestVote {
                    pre_vote, transfer, ..
                } => {
                    let in_lease = self.cfg.check_quorum
                        && !*transfer
                        && (self.role == Role::Leader
                            || self.now_ms < self.leader_contact_ms + self.cfg.elect_timeout_ms);
                    if in_lease {
                        debug!(
                            group = self.cfg.group,
                            node = self.id,
                            from = m.from,
                            "vote request ignored: leader lease"
                        );
                        return false;
                    }
                    if !*pre_vote {
                        self.become_follower(m.term, NONE);
                    }
                }
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow => self.become_follower(m.term, m.from),
                _ => self.become_follower(m.term, NONE),
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    // Tell the stale leader about the newer term.
                    let applied = self.log.applied;
                    self.send(
                        m.from,
                        MessageBody::HeartbeatResponse {
                            applied,
                            seq: 0,
                            send_ms: 0,
                        },
                    );
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        MessageBody::RequestVoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return false;
        }
        true
    }

    /// Voter timer: campaign when no leader was heard within the election
    /// timeout.
    pub(super) fn tick_election(&mut self) {
        if self.now_ms >= self.election_deadline_ms {
            self.campaign(self.election_kind());
        }
    }

    /// Leader timer: step down when a quorum of voters was not heard from within
    /// an election timeout. Returns whether this node still leads.
    pub(super) fn tick_check_quorum(&mut self) -> bool {
        let now = self.now_ms;
        if !self.cfg.check_quorum || now < self.check_quorum_deadline_ms {
            return true;
        }
        self.check_quorum_deadline_ms = now + self.cfg.elect_timeout_ms;
        let id = self.id;
        let prs = &self.prs;
        let active = self
            .membership
            .quorum(|v| v == id || prs.iter().any(|(p, pr)| *p == v && pr.recent_active));
        for (_, pr) in &mut self.prs {
            pr.recent_active = false;
        }
        if !active {
            warn!(
                group = self.cfg.group,
                node = self.id,
                term = self.term,
                "leader lost quorum, stepping down"
            );
            self.become_follower(self.term, NONE);
            return false;
        }
        true
    }

    /// The round an election timeout starts: pre-vote when enabled.
    fn election_kind(&self) -> CampaignKind {
        if self.cfg.pre_vote {
            CampaignKind::PreVote
        } else {
            CampaignKind::Vote
        }
    }

    /// Whether this node may campaign: it votes in the latest configuration, or
    /// that configuration is not yet committed and it voted in the last
    /// committed one. Without the second rule, a change whose leader stepped
    /// down before committing it could leave only nodes that consider
    /// themselves removed holding the newest log, and no one could be elected.
    pub(super) fn can_campaign(&self) -> bool {
        if self.membership.is_voter(self.id) {
            return true;
        }
        if self.membership.index <= self.log.commit {
            return false;
        }
        let commit = self.log.commit;
        self.history
            .iter()
            .rev()
            .find(|m| m.index <= commit)
            .is_some_and(|m| m.is_voter(self.id))
    }

    pub(super) fn passive_role(&self) -> Role {
        if self.can_campaign() {
            Role::Follower
        } else if self.membership.contains(self.id) {
            Role::Observer
        } else {
            Role::Removed
        }
    }

    fn next_rand(&mut self) -> u64 {
        // SplitMix64: deterministic, no dependency, good enough for timeouts.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn reset_election_timer(&mut self) {
        let et = self.cfg.elect_timeout_ms;
        let r = self.next_rand() % et;
        self.election_deadline_ms = self.now_ms + et + r;
    }

    pub(super) fn follow(&mut self, leader: NodeId) {
        if self.role == Role::PreCandidate || self.role == Role::Candidate {
            self.become_follower(self.term, leader);
        }
        self.leader = leader;
        self.leader_contact_ms = self.now_ms;
        self.reset_election_timer();
    }

    pub(super) fn become_follower(&mut self, term: u64, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = NONE;
        }
        self.leader = leader;
        self.role = self.passive_role();
        self.votes.clear();
        self.won_pending = false;
        self.reset_election_timer();
        if was_leader {
            info!(
                group = self.cfg.group,
                node = self.id,
                term,
                "leader stepped down"
            );
            self.prs.clear();
            self.transfer = None;
            self.noop_index = u64::MAX;
            self.pending_op = None;
            self.fail_held(leader);
            self.fail_reads();
        }
    }

    fn voters_except_self(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.membership.members.clone();
        if let Some(j) = &self.membership.joint {
            v.extend(&j.target.members);
        }
        v.sort_unstable();
        v.dedup();
        v.retain(|id| *id != self.id);
        v
    }

    pub(super) fn campaign(&mut self, kind: CampaignKind) {
        if !self.can_campaign() {
            return;
        }
        let pre_vote = kind == CampaignKind::PreVote;
        if pre_vote {
            self.role = Role::PreCandidate;
            self.leader = NONE;
            self.reset_election_timer();
        } else {
            self.term += 1;
            self.vote = self.id;
            self.role = Role::Candidate;
            self.leader = NONE;
            self.reset_election_timer();
        }
        let why = match kind {
            CampaignKind::PreVote => "no leader heard within the election timeout: pre-vote",
            CampaignKind::Vote => "a quorum granted the pre-vote, or pre-vote is off: vote",
            CampaignKind::Transfer => "the leader hands leadership to this node: vote",
        };
        info!(
            group = self.cfg.group,
            node = self.id,
            term = self.term,
            why,
            "election started"
        );
        self.won_pending = false;
        self.votes.clear();
        self.votes.push((self.id, true));
        if self.tally() {
            return;
        }
        let term = if pre_vote { self.term + 1 } else { self.term };
        let last_index = self.log.last_index();
        let last_term = self.log.last_term();
        let transfer = kind == CampaignKind::Transfer;
        for to in self.voters_except_self() {
            let body = MessageBody::RequestVote {
                pre_vote,
                last_index,
                last_term,
                transfer,
            };
            self.persisted_msgs.push(Message {
                from: self.id,
                to,
                term,
                body,
            });
        }
    }

    /// Returns true when the election was decided.
    fn tally(&mut self) -> bool {
        let votes = &self.votes;
        let won = self
            .membership
            .quorum(|id| votes.iter().any(|(v, g)| *v == id && *g));
        let lost = !self
            .membership
            .quorum(|id| !votes.iter().any(|(v, g)| *v == id && !*g));
        if won {
            if self.role == Role::PreCandidate {
                self.campaign(CampaignKind::Vote);
            } else if self.durable_term < self.term {
                // A crash now would forget the term and the self-vote: this node
                // could then lead the same term twice.
                self.won_pending = true;
            } else {
                self.become_leader();
            }
            true
        } else if lost {
            self.become_follower(self.term, NONE);
            true
        } else {
            false
        }
    }

    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        msg_term: u64,
        pre_vote: bool,
        last_index: u64,
        last_term: u64,
    ) {
        let can_vote = self.vote == from
            || (self.vote == NONE && self.leader == NONE)
            || (pre_vote && msg_term > self.term);
        let log_ok = self.cfg.mutated(Mutation::VoteWithoutLogCheck)
            || self.log.is_up_to_date(last_index, last_term);
        let granted = can_vote && log_ok;
        if granted && !pre_vote {
            self.vote = from;
            self.reset_election_timer();
        }
        let term = if granted && pre_vote {
            msg_term
        } else {
            self.term
        };
        debug!(
            group = self.cfg.group,
            node = self.id,
            from,
            term,
            pre_vote,
            granted,
            "vote request"
        );
        let m = Message {
            from: self.id,
            to: from,
            term,
            body: MessageBody::RequestVoteResponse { pre_vote, granted },
        };
        self.persisted_msgs.push(m);
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, pre_vote: bool, granted: bool) {
        let expected = match self.role {
            Role::PreCandidate => pre_vote,
            Role::Candidate => !pre_vote,
            _ => return,
        };
        if !expected || self.votes.iter().any(|(v, _)| *v == from) {
            return;
        }
        if !self.membership.is_voter(from) {
            return;
        }
        self.votes.push((from, granted));
        self.tally();
    }

    pub(super) fn become_leader(&mut self) {
        info!(
            group = self.cfg.group,
            node = self.id,
            term = self.term,
            "became leader"
        );
        self.role = Role::Leader;
        self.leader = self.id;
        self.votes.clear();
        self.transfer = None;
        self.lease_disabled = false;
        self.reads.clear();
        self.read_heartbeat = false;
        self.pending_op = None;
        self.pending_config_index = self.log.last_index();
        self.check_quorum_deadline_ms = self.now_ms + self.cfg.elect_timeout_ms;
        self.rebuild_progress();
        let lid = self.append_entry(EntryKind::Noop, Bytes::new());
        self.noop_index = lid.index;
        self.heartbeat_deadline_ms = self.now_ms + self.cfg.heartbeat_interval_ms;
        self.maybe_commit();
    }
}
