//! The consensus state machine of one node.
//!
//! [`RawNode`] owns the state; each concern lives in its own module as an
//! `impl RawNode` block:
//!
//! - `election`: terms, pre-vote and vote rounds, role changes;
//! - `replication`: proposals, appends, acknowledgements, commit advancement;
//! - `snapshot`: sending, receiving and installing snapshots, compaction;
//! - `read_only`: ReadIndex and lease reads;
//! - `transfer`: leader transfer;
//! - `confchange`: joint-consensus configuration changes, and nowhere else;
//! - `ready`: the output handed to the application and its progress reports.
//!
//! [`RawNode::tick`] and [`RawNode::step`] only route timers and messages to
//! the module that owns them.

mod confchange;
mod election;
mod read_only;
mod ready;
mod replication;
mod snapshot;
mod transfer;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info};

use crate::config::Config;
use crate::error::{InitError, StorageError};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::progress::Progress;
use crate::storage::Storage;
use crate::types::{
    Entry, HardState, LogId, Message, MessageBody, NONE, NodeId, Snapshot, SnapshotMeta,
};

pub use confchange::AdminOutcome;
use confchange::PendingOp;
use read_only::PendingRead;
pub use read_only::ReadState;
pub use ready::Ready;
pub use replication::Proposed;
pub use transfer::HeldProposal;
use transfer::Transfer;

/// Role of a node in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Voter following a leader (or waiting for one).
    Follower,
    /// Voter in a pre-vote round (term not yet incremented).
    PreCandidate,
    /// Voter campaigning in a new term.
    Candidate,
    /// The leader of the current term.
    Leader,
    /// Listed as an observer: receives the log, never campaigns, never counts.
    Observer,
    /// Not in the configuration (removed, or a new node not yet added).
    Removed,
}

/// A copy of a node's state that other threads can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// Vote cast in `term`.
    pub vote: NodeId,
    /// Known leader, or [`NONE`].
    pub leader: NodeId,
    /// Commit index.
    pub commit: u64,
    /// Index the application reported applied.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Index the application reported persisted.
    pub persisted: u64,
    /// Configuration in force (includes the joint half while a change runs).
    pub membership: Membership,
    /// Target of a running leader transfer.
    pub transfer_target: Option<NodeId>,
    /// Whether a lease read would be served now (leader only).
    pub lease_valid: bool,
}

/// What the leader knows of how far a peer trails it ([`RawNode::peer_lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLag {
    /// Committed entries the peer's log is not known to hold.
    pub behind: u64,
    /// Milliseconds since the leader sent the newest message the peer
    /// acknowledged; `None` when it never acknowledged one.
    pub silent_ms: Option<u64>,
}

/// A Raft node without I/O: feed it time ([`RawNode::tick`]), messages
/// ([`RawNode::step`]) and requests; collect work with [`RawNode::ready`].
///
/// One thread owns a `RawNode`; publish [`RawNode::status`] copies to others.
pub struct RawNode<S: Storage> {
    cfg: Config,
    id: NodeId,
    log: RaftLog<S>,
    term: u64,
    vote: NodeId,
    leader: NodeId,
    role: Role,
    membership: Membership,
    /// Older configurations still needed to describe snapshots (ascending index).
    history: Vec<Membership>,
    prs: Vec<(NodeId, Progress)>,
    votes: Vec<(NodeId, bool)>,
    now_ms: u64,
    election_deadline_ms: u64,
    heartbeat_deadline_ms: u64,
    check_quorum_deadline_ms: u64,
    leader_contact_ms: u64,
    rng: u64,
    // Leader state.
    noop_index: u64,
    pending_op: Option<(u64, PendingOp)>,
    pending_config_index: u64,
    transfer: Option<Transfer>,
    lease_disabled: bool,
    held: VecDeque<(u64, Bytes)>,
    next_held_id: u64,
    seq: u64,
    reads: VecDeque<PendingRead>,
    read_heartbeat: bool,
    // Follower state.
    follower_reads: Vec<(u64, u64)>,
    incoming_snapshot: Option<(SnapshotMeta, BytesMut)>,
    // Output.
    msgs: Vec<Message>,
    persisted_msgs: Vec<Message>,
    pending_snapshot: Option<Snapshot>,
    read_states: Vec<ReadState>,
    held_results: Vec<HeldProposal>,
    emitted_hs: HardState,
    /// Term of the last hard state reported durable. Leader messages of a newer
    /// term wait for persistence: a crash that loses the term could otherwise
    /// let this node lead the same term twice with different entries.
    durable_term: u64,
    /// Won an election whose term and self-vote are not yet durable (only
    /// possible without other voters): lead once they are.
    won_pending: bool,
    /// A snapshot replaced the configuration: emit it even if its index equals
    /// `emitted_membership_index`.
    membership_dirty: bool,
    /// Index of the committed configuration last emitted for persistence.
    emitted_membership_index: u64,
    scratch: Vec<u64>,
}

impl<S: Storage> RawNode<S> {
    /// Start (or restart) a node from its storage at time `now_ms`.
    ///
    /// A restarted node behaves as if it had just heard from a leader: it grants
    /// no vote for one election timeout, which keeps leases valid across crashes.
    /// Cost: reads the uncommitted tail of the log once to find configuration
    /// entries.
    pub fn new(cfg: Config, store: S, now_ms: u64) -> Result<RawNode<S>, InitError> {
        cfg.validate()?;
        let state = store.initial_state()?;
        let hs = state.hard_state;
        let log = RaftLog::new(store, hs.commit, cfg.applied);
        let membership_index = state.membership.index;
        // Configuration entries take effect when appended: replay those after
        // the persisted configuration (a crash may have separated the two).
        let mut config_entries = Vec::new();
        let mut i = state.membership.index.max(log.start.index) + 1;
        let last = log.last_index();
        let mut buf = Vec::new();
        while i <= last {
            buf.clear();
            log.entries(i, last + 1, 4 << 20, &mut buf)?;
            config_entries.extend(buf.iter().filter(|e| e.kind.is_config()).cloned());
            i += buf.len().max(1) as u64;
        }
        let mut n = RawNode {
            id: cfg.id,
            rng: cfg.seed ^ 0x9E37_79B9_7F4A_7C15 ^ cfg.id.rotate_left(17),
            log,
            term: hs.term,
            vote: hs.vote,
            leader: NONE,
            role: Role::Follower,
            membership: state.membership,
            history: Vec::new(),
            prs: Vec::new(),
            votes: Vec::new(),
            now_ms,
            election_deadline_ms: now_ms,
            heartbeat_deadline_ms: now_ms,
            check_quorum_deadline_ms: now_ms,
            leader_contact_ms: now_ms,
            noop_index: u64::MAX,
            pending_op: None,
            pending_config_index: 0,
            transfer: None,
            lease_disabled: false,
            held: VecDeque::new(),
            next_held_id: 1,
            seq: 0,
            reads: VecDeque::new(),
            read_heartbeat: false,
            follower_reads: Vec::new(),
            incoming_snapshot: None,
            msgs: Vec::new(),
            persisted_msgs: Vec::new(),
            pending_snapshot: None,
            read_states: Vec::new(),
            held_results: Vec::new(),
            emitted_hs: hs,
            durable_term: hs.term,
            won_pending: false,
            membership_dirty: false,
            emitted_membership_index: membership_index,
            scratch: Vec::new(),
            cfg,
        };
        for e in &config_entries {
            n.apply_config(e);
        }
        n.role = n.passive_role();
        n.reset_election_timer();
        info!(
            group = n.cfg.group,
            node = n.id,
            term = n.term,
            commit = n.log.commit,
            last = last,
            "raft node started"
        );
        Ok(n)
    }

    // ----------------------------------------------------------------- queries

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Known leader or [`NONE`].
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// Commit index.
    pub fn commit_index(&self) -> u64 {
        self.log.commit
    }

    /// Last log index (including unpersisted entries).
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// Applied index reported by the application.
    pub fn applied_index(&self) -> u64 {
        self.log.applied
    }

    /// Index and term of the log start (snapshot point).
    pub fn log_start(&self) -> LogId {
        self.log.start
    }

    /// Configuration in force.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// On the leader, how far `peer` trails it: entries its log is known to
    /// lack below the commit index, and how long ago (leader clock) the newest
    /// message the peer acknowledged was sent. `None` elsewhere, or for a node
    /// the leader does not replicate to.
    pub fn peer_lag(&self, peer: NodeId) -> Option<PeerLag> {
        if self.role != Role::Leader {
            return None;
        }
        self.prs
            .iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, pr)| PeerLag {
                behind: self.log.commit.saturating_sub(pr.match_index),
                silent_ms: (pr.acked_send_ms > 0)
                    .then(|| self.now_ms.saturating_sub(pr.acked_send_ms)),
            })
    }

    /// On the leader, the entries `peer` lacks: the leader's last index minus
    /// the peer's match index. `None` elsewhere, or for a node the leader does
    /// not replicate to. O(peers), no allocation.
    pub fn replication_lag(&self, peer: NodeId) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        self.prs
            .iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, pr)| self.log.last_index().saturating_sub(pr.match_index))
    }

    /// Whether a linearizable read asked of this node now would be answered
    /// by the leader's lease, without a heartbeat round: true only on a
    /// leader with a valid lease. O(voters), no allocation beyond a scratch
    /// vector.
    pub fn lease_read_ready(&self) -> bool {
        self.role == Role::Leader && self.lease_valid()
    }

    /// Term of the entry at `index`.
    pub fn entry_term(&self, index: u64) -> Result<u64, StorageError> {
        self.log.term(index)
    }

    /// Entries `[low, high)` from memory or storage (at most `max_bytes`, at least
    /// one). Allocates the returned vector.
    pub fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let mut v = Vec::new();
        self.log.entries(low, high, max_bytes, &mut v)?;
        Ok(v)
    }

    /// The storage the node reads from.
    pub fn store(&self) -> &S {
        &self.log.store
    }

    /// Mutable access to the storage (to persist a ready or compact).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.log.store
    }

    /// Consume the node, returning its storage (e.g. to restart it).
    pub fn into_store(self) -> S {
        self.log.store
    }

    /// A status copy. Allocates (clones the membership).
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.log.commit,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            persisted: self.log.persisted,
            membership: self.membership.clone(),
            transfer_target: self.transfer.as_ref().map(|t| t.target),
            lease_valid: self.role == Role::Leader && self.lease_valid(),
        }
    }

    // ------------------------------------------------------------------ inputs

    /// Advance the node's clock to `now_ms` (monotonic milliseconds; earlier
    /// values are ignored) and run timers: elections, heartbeats, check-quorum,
    /// transfer and read timeouts. Cost: O(peers) per call.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        match self.role {
            Role::Leader => {
                if self.now_ms >= self.heartbeat_deadline_ms {
                    self.bcast_heartbeat();
                }
                if !self.tick_check_quorum() {
                    return;
                }
                self.tick_transfer();
                self.expire_leader_reads();
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(),
            Role::Observer | Role::Removed => {}
        }
        self.expire_follower_reads();
    }

    /// Feed a message from a peer. Messages not for this node, from stale terms
    /// or otherwise irrelevant are dropped (logged at debug level).
    pub fn step(&mut self, m: Message) {
        if m.to != self.id || m.from == self.id || m.from == NONE {
            debug!(
                group = self.cfg.group,
                node = self.id,
                from = m.from,
                to = m.to,
                "message dropped: wrong address"
            );
            return;
        }
        if !self.check_term(&m) {
            return;
        }
        let from = m.from;
        let term = m.term;
        match m.body {
            MessageBody::RequestVote {
                pre_vote,
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(from, term, pre_vote, last_index, last_term),
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(from, pre_vote, granted)
            }
            MessageBody::Append {
                prev_index,
                prev_term,
                commit,
                entries,
                seq,
                send_ms,
            } => self.handle_append(
                from, term, prev_index, prev_term, commit, entries, seq, send_ms,
            ),
            MessageBody::Heartbeat {
                commit,
                seq,
                send_ms,
            } => self.handle_heartbeat(from, commit, seq, send_ms),
            MessageBody::InstallSnapshot {
                meta,
                offset,
                data,
                done,
                seq,
                send_ms,
            } => self.handle_snapshot_chunk(from, meta, offset, data, done, seq, send_ms),
            MessageBody::AppendResponse {
                reject,
                index,
                hint_index,
                hint_term,
                applied,
                seq,
                send_ms,
            } => self.handle_append_response(
                from, reject, index, hint_index, hint_term, applied, seq, send_ms,
            ),
            MessageBody::HeartbeatResponse {
                applied,
                seq,
                send_ms,
            } => self.handle_heartbeat_response(from, applied, seq, send_ms),
            MessageBody::SnapshotResponse {
                snapshot_index,
                next_offset,
                done,
                seq,
                send_ms,
            } => {
                self.handle_snapshot_response(from, snapshot_index, next_offset, done, seq, send_ms)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndex { ctx } => self.handle_read_index(from, ctx),
            MessageBody::ReadIndexResponse { ctx, index } => {
                self.handle_read_index_response(ctx, index)
            }
        }
    }

    // --------------------------------------------------------------- internals

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let m = Message {
            from: self.id,
            to,
            term: self.term,
            body,
        };
        if self.role == Role::Leader {
            self.msgs.push(m);
        } else {
            self.persisted_msgs.push(m);
        }
    }
}
