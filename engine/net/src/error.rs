//! The error type of client calls.

use std::net::SocketAddr;

use crate::proto::LeaderHint;
use crate::status::Status;

/// Why a call, one-way send or push did not succeed.
///
/// Every variant maps to a stable [`Status`] code ([`RpcError::status`]) and
/// says whether sending the same request again is safe ([`RpcError::retryable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The server answered with a status other than SUCCESS.
    #[error("{status}: {message}")]
    Remote {
        /// The status from the response header.
        status: Status,
        /// The server's explanation (from the error body).
        message: String,
        /// Where the leader is, when the status is NOT_RAFT_LEADER and the
        /// server knows.
        leader: Option<LeaderHint>,
    },
    /// The deadline passed before a response arrived. The request may or may
    /// not have been executed.
    #[error("TIMEOUT(10): no response within {timeout_ms} ms")]
    Timeout {
        /// The timeout the caller gave.
        timeout_ms: u64,
    },
    /// The client's own flow-control limit was reached and the caller chose to
    /// fail fast, or the deadline passed while waiting for a permit. Nothing
    /// was sent.
    #[error("FLOW_CONTROL(6): {0}")]
    FlowControl(String),
    /// Connecting failed or the connection was lost.
    #[error("NETWORK_ERROR(12): {addr}: {reason}")]
    Network {
        /// The peer.
        addr: SocketAddr,
        /// What happened.
        reason: String,
        /// False when the request certainly never left this process.
        sent: bool,
    },
    /// The request is invalid before it is sent (e.g. body over the limit).
    #[error("CLIENT_ERROR(1): {0}")]
    InvalidRequest(String),
    /// The peer broke the protocol; the connection was closed.
    #[error("PROTOCOL_ERROR(11): {0}")]
    Protocol(String),
    /// The client or server handle was closed.
    #[error("CLOSED(13): {0}")]
    Closed(&'static str),
}

impl RpcError {
    /// The stable status code of this error (see `docs/protocol.md`).
    pub fn status(&self) -> Status {
        match self {
            RpcError::Remote { status, .. } => *status,
            RpcError::Timeout { .. } => Status::TIMEOUT,
            RpcError::FlowControl(_) => Status::FLOW_CONTROL,
            RpcError::Network { .. } => Status::NETWORK_ERROR,
            RpcError::InvalidRequest(_) => Status::CLIENT_ERROR,
            RpcError::Protocol(_) => Status::PROTOCOL_ERROR,
            RpcError::Closed(_) => Status::CLOSED,
        }
    }

    /// True when the request was certainly not executed, so sending it again
    /// (after a pause, or to the hinted leader) is safe even if it is not
    /// idempotent.
    pub fn retryable(&self) -> bool {
        match self {
            RpcError::Remote { status, .. } => status.retryable(),
            RpcError::FlowControl(_) => true,
            RpcError::Network { sent, .. } => !sent,
            RpcError::Timeout { .. }
            | RpcError::InvalidRequest(_)
            | RpcError::Protocol(_)
            | RpcError::Closed(_) => false,
        }
    }

    /// The leader hint of a NOT_RAFT_LEADER error.
    pub fn leader_hint(&self) -> Option<&LeaderHint> {
        match self {
            RpcError::Remote { leader, .. } => leader.as_ref(),
            _ => None,
        }
    }
}
