//! Why a call failed: [`ClientError`] and its stable codes.

use std::time::Duration;

use dongting_kv::KvError;
use dongting_net::{RpcError, Status};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// DtKV refused the operation (bad key, missing parent, CAS mismatch...);
    /// nothing changed. `index` is the raft index the answer reflects (0 when
    /// refused before reaching the log).
    #[error("{error} (index {index})")]
    Kv {
        /// The state machine's error.
        error: KvError,
        /// Raft index of the answer.
        index: u64,
    },
    /// The call failed at the RPC level and was not (or could no longer be)
    /// retried.
    #[error("{0}")]
    Rpc(RpcError),
    /// The deadline passed before an answer: a read, or a write none of
    /// whose attempts left this process (it waited for a free slot, say). A
    /// write that may have reached a server ends in
    /// [`ClientError::UnknownOutcome`] instead.
    #[error("TIMEOUT: no answer within {0:?}")]
    Timeout(Duration),
    /// The arguments are invalid; nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// A write failed after an attempt of it may have reached a server, and
    /// no later attempt could learn its fate within the deadline: it may or
    /// may not have been applied. The text names the last failure. Sending
    /// it again is a new write; read the keys to learn what happened.
    #[error("UNKNOWN_OUTCOME: the write may or may not have been applied ({0})")]
    UnknownOutcome(String),
}

/// The stable code of [`ClientError::InvalidArgument`] (codes from 900 on
/// are raised by the client library itself, not by a server).
pub const INVALID_ARGUMENT: u32 = 900;

/// The stable code of [`ClientError::UnknownOutcome`].
pub const UNKNOWN_OUTCOME: u32 = 911;

impl ClientError {
    /// The stable code: the DtKV error code for [`ClientError::Kv`], the
    /// client's own [`INVALID_ARGUMENT`] and [`UNKNOWN_OUTCOME`], otherwise
    /// the RPC status number.
    pub fn code(&self) -> u32 {
        match self {
            ClientError::Kv { error, .. } => u32::from(error.code()),
            ClientError::Rpc(e) => e.status().0,
            ClientError::Timeout(_) => Status::TIMEOUT.0,
            ClientError::InvalidArgument(_) => INVALID_ARGUMENT,
            ClientError::Closed => Status::CLOSED.0,
            ClientError::UnknownOutcome(_) => UNKNOWN_OUTCOME,
        }
    }

    /// True when the request was certainly not executed, so sending it
    /// again, also to another node, is safe even for a write. A write that
    /// may have reached a server never fails with a retryable error: it ends
    /// in [`ClientError::UnknownOutcome`] instead.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Kv { error, .. } => error.is_retryable(),
            ClientError::Rpc(e) => e.retryable(),
            ClientError::Timeout(_)
            | ClientError::InvalidArgument(_)
            | ClientError::Closed
            | ClientError::UnknownOutcome(_) => false,
        }
    }
}

impl ClientError {
    /// This failure as the end of a write an earlier attempt of which may
    /// have been executed.
    pub(crate) fn unknown_outcome(self) -> ClientError {
        match self {
            ClientError::UnknownOutcome(_) => self,
            e => ClientError::UnknownOutcome(format!("last failure: {e}")),
        }
    }
}

pub(crate) fn unexpected() -> ClientError {
    ClientError::Kv {
        error: KvError::InvalidCommand("the answer does not match the request".into()),
        index: 0,
    }
}
