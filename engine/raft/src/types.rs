//! Log entries, persistent state, snapshots and messages.
//!
//! Everything here is a plain value type: the node runtime encodes messages on the
//! wire and the storage crate persists entries and hard state; the core never does.

use bytes::Bytes;

use crate::membership::Membership;

/// Identifier of a node inside one raft group. `0` is reserved for "none".
pub type NodeId = u64;

/// The reserved "no node" id (no leader known, no vote cast).
pub const NONE: NodeId = 0;

/// What a log entry means to the core.
///
/// Only `Normal` entries carry application data; the others are interpreted by the
/// core and are also handed to the application in committed order so it can keep
/// its applied index contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// Application command.
    Normal = 0,
    /// Empty entry appended by every new leader; committing it commits all earlier
    /// entries and opens lease reads.
    Noop = 1,
    /// Enter joint consensus: data is [`crate::ConfigTarget`] encoded.
    ConfigPrepare = 2,
    /// Leave joint consensus towards the new configuration: data is the prepare
    /// index as 8 bytes little endian.
    ConfigCommit = 3,
    /// Leave joint consensus back to the old configuration: data is the prepare
    /// index as 8 bytes little endian.
    ConfigAbort = 4,
}

impl EntryKind {
    /// Stable numeric code for encoders.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`EntryKind::code`]; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<EntryKind> {
        Some(match code {
            0 => EntryKind::Normal,
            1 => EntryKind::Noop,
            2 => EntryKind::ConfigPrepare,
            3 => EntryKind::ConfigCommit,
            4 => EntryKind::ConfigAbort,
            _ => return None,
        })
    }

    /// Whether the core interprets this entry as a configuration change.
    pub fn is_config(self) -> bool {
        matches!(
            self,
            EntryKind::ConfigPrepare | EntryKind::ConfigCommit | EntryKind::ConfigAbort
        )
    }
}

/// One log entry. Cloning is cheap: the payload is a reference-counted [`Bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Position in the log, starting at 1.
    pub index: u64,
    /// How the core interprets the entry.
    pub kind: EntryKind,
    /// Payload; empty for `Noop`.
    pub data: Bytes,
}

impl Entry {
    /// Approximate in-memory and on-wire size used for flow-control windows.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// Fixed per-entry cost counted by byte windows (term, index, kind, length).
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

/// A `(index, term)` pair naming one log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogId {
    /// Log index.
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
}

/// State that must be durable before messages that depend on it are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Candidate voted for in `term`, or [`NONE`].
    pub vote: NodeId,
    /// Highest index known committed.
    pub commit: u64,
}

/// Metadata of a state machine snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Last log index covered by the snapshot.
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// Configuration in force at `index`.
    pub membership: Membership,
}

/// A complete snapshot: metadata plus the state machine's opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Where the snapshot sits in the log and which configuration it carries.
    pub meta: SnapshotMeta,
    /// State machine image, produced and consumed by the application.
    pub data: Bytes,
}

/// One message between two nodes of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Sender's term when the message was created (for pre-vote requests: the term
    /// the sender would campaign in).
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The body of a [`Message`].
///
/// `seq` and `send_ms` on leader messages are echoed by followers: `seq` proves
/// that a quorum answered after a read arrived (ReadIndex), `send_ms` (the leader's
/// clock when it sent) extends the read lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// Ask for a vote (or a pre-vote, which changes no state on the receiver).
    RequestVote {
        /// Pre-vote round: the receiver only says whether it would vote.
        pre_vote: bool,
        /// Candidate's last log index.
        last_index: u64,
        /// Candidate's last log term.
        last_term: u64,
        /// Election triggered by a leader transfer: overrides the receiver's
        /// leader stickiness.
        transfer: bool,
    },
    /// Answer to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Answer to a pre-vote round.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Replicate entries (possibly none, to carry the commit index).
    Append {
        /// Index of the entry just before `entries`.
        prev_index: u64,
        /// Term of the entry at `prev_index`.
        prev_term: u64,
        /// Leader's commit index.
        commit: u64,
        /// Entries to append, contiguous from `prev_index + 1`.
        entries: Vec<Entry>,
        /// Leader's message sequence number, echoed.
        seq: u64,
        /// Leader's clock at send time, echoed.
        send_ms: u64,
    },
    /// Answer to [`MessageBody::Append`].
    AppendResponse {
        /// The append did not match the follower's log.
        reject: bool,
        /// On success the follower's matching index; on reject the rejected
        /// `prev_index`.
        index: u64,
        /// On reject: the largest index whose term is at most `hint_term` (the
        /// follower's suggestion where the logs may agree).
        hint_index: u64,
        /// On reject: term of the follower's entry at `hint_index`.
        hint_term: u64,
        /// Follower's applied index (used by membership commit checks).
        applied: u64,
        /// Echo of the request's `seq`.
        seq: u64,
        /// Echo of the request's `send_ms`.
        send_ms: u64,
    },
    /// Leader liveness and commit propagation without entries.
    Heartbeat {
        /// `min(leader commit, follower match)`.
        commit: u64,
        /// Leader's message sequence number, echoed.
        seq: u64,
        /// Leader's clock at send time, echoed.
        send_ms: u64,
    },
    /// Answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// Follower's applied index.
        applied: u64,
        /// Echo of the request's `seq`.
        seq: u64,
        /// Echo of the request's `send_ms`.
        send_ms: u64,
    },
    /// One chunk of a snapshot. Chunks are sent in order; a follower that sees an
    /// unexpected offset answers with the offset it expects.
    InstallSnapshot {
        /// Which snapshot this chunk belongs to.
        meta: SnapshotMeta,
        /// Byte offset of `data` in the snapshot image.
        offset: u64,
        /// The chunk (a zero-copy slice of the image).
        data: Bytes,
        /// This chunk ends the image.
        done: bool,
        /// Leader's message sequence number, echoed.
        seq: u64,
        /// Leader's clock at send time, echoed.
        send_ms: u64,
    },
    /// Answer to [`MessageBody::InstallSnapshot`].
    SnapshotResponse {
        /// Index of the snapshot this answers.
        snapshot_index: u64,
        /// Next offset the follower expects (the image length once installed).
        next_offset: u64,
        /// The snapshot was completely received and handed out for installation.
        done: bool,
        /// Echo of the request's `seq`.
        seq: u64,
        /// Echo of the request's `send_ms`.
        send_ms: u64,
    },
    /// Leader transfer: the receiver starts an election at once.
    TimeoutNow,
    /// A follower asks the leader for a read index.
    ReadIndex {
        /// Caller's read context, echoed.
        ctx: u64,
    },
    /// Leader's answer to [`MessageBody::ReadIndex`].
    ReadIndexResponse {
        /// Echo of the request's context.
        ctx: u64,
        /// The read index, or `None` when the leader could not confirm it.
        index: Option<u64>,
    },
}

impl MessageBody {
    /// Short name used in logs.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::SnapshotResponse { .. } => "SnapshotResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}
