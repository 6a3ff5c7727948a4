//! Error types. Every variant is cheap to build and safe to show to a client.

use crate::types::NodeId;

/// Malformed encoded membership or configuration payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Input ended before the value was complete.
    #[error("encoded value is truncated")]
    Truncated,
    /// Encoding version this build does not understand.
    #[error("unsupported encoding version {0}")]
    UnsupportedVersion(u8),
    /// Input is structurally wrong.
    #[error("invalid encoding: {0}")]
    Invalid(&'static str),
}

/// Errors a [`crate::Storage`] implementation returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index is behind the snapshot (compacted away).
    #[error("log index {0} is compacted")]
    Compacted(u64),
    /// The requested index is past the end of the stored log.
    #[error("log index {0} is unavailable")]
    Unavailable(u64),
    /// No snapshot exists yet, or it is being produced.
    #[error("snapshot temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Anything else (I/O, corruption). The group should stop.
    #[error("storage failure: {0}")]
    Other(String),
}

/// Why a proposal was refused. `retry_safe` tells clients whether resending is safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is a hint (0 when unknown).
    #[error("not leader (leader hint {leader})")]
    NotLeader {
        /// The known leader, or 0.
        leader: NodeId,
    },
    /// Too many proposals are held while a leader transfer runs.
    #[error("too many proposals held during leader transfer")]
    TransferBacklogFull,
    /// The payload is larger than `Config::max_entry_bytes`.
    #[error("entry of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload size.
        size: u64,
        /// Configured limit.
        max: u64,
    },
}

impl ProposeError {
    /// Whether the caller may resend the same proposal elsewhere without risk of a
    /// double apply (nothing was appended).
    pub fn retry_safe(&self) -> bool {
        true
    }
}

/// Why an admin operation (membership change, leader transfer) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// This node is not the leader.
    #[error("not leader (leader hint {leader})")]
    NotLeader {
        /// The known leader, or 0.
        leader: NodeId,
    },
    /// The new configuration is malformed.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A different change is in progress (joint with another target, or an
    /// uncommitted configuration entry in the log).
    #[error("another membership change is in progress")]
    ChangeInProgress,
    /// `commit`/`abort` named a prepare index that is not the current joint phase.
    #[error("no prepared change at index {0}")]
    NoSuchPrepare(u64),
    /// The prepare was aborted; it can no longer be committed.
    #[error("prepare at index {0} was aborted")]
    Aborted(u64),
    /// The prepare was committed; it can no longer be aborted.
    #[error("prepare at index {0} was already committed")]
    AlreadyCommitted(u64),
    /// `commit` before a quorum of the new configuration applied the prepare.
    #[error("prepare at index {prepare_index} not yet applied by a quorum of the new members")]
    NotApplied {
        /// The prepare index.
        prepare_index: u64,
    },
    /// Leader transfer to a node that is not a voter, or to itself.
    #[error("node {0} cannot become leader")]
    BadTransferTarget(NodeId),
    /// A leader transfer is already running.
    #[error("a leader transfer is already in progress")]
    TransferInProgress,
}

/// Why a read could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No leader is known or leadership was lost before the read was confirmed.
    #[error("no leader could confirm the read")]
    NotLeader,
    /// The read was not confirmed within an election timeout.
    #[error("read index timed out")]
    Timeout,
}

/// Errors from constructing a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Configuration values are inconsistent.
    #[error("invalid config: {0}")]
    Config(&'static str),
    /// Storage failed while loading the initial state.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
