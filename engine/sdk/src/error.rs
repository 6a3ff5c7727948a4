//! The one error type of the facade, with stable numeric codes.
//!
//! Code ranges (they never change meaning; bindings map them to their own
//! exception or error types):
//!
//! | range | source |
//! |------:|--------|
//! | 0 | success |
//! | 1–999 | RPC status codes of `docs/protocol.md` (1 CLIENT_ERROR ... 13 CLOSED) |
//! | 900–999 | errors raised by this facade itself (see the `*` constants below) |
//! | 1000 + n | DtKV error code `n` of `docs/kv.md` (1002 NOT_FOUND, 1014 CAS_MISMATCH, ...) |

use dongting_client::ClientError;
use dongting_kv::KvError;
use dongting_net::{RpcError, Status};

/// Offset added to a DtKV error code to form its facade code.
pub const KV_CODE_BASE: i32 = 1000;

/// Stable error codes. Each binding exports the same numbers.
pub mod code {
    /// No error.
    pub const OK: i32 = 0;
    /// The request is invalid; retrying it fails again (RPC status 1).
    pub const CLIENT_ERROR: i32 = 1;
    /// The server failed while executing; the effect is unknown (RPC status 2).
    pub const SYS_ERROR: i32 = 2;
    /// Unknown command on this port (RPC status 3).
    pub const COMMAND_NOT_SUPPORTED: i32 = 3;
    /// The server or group is still starting (RPC status 4).
    pub const NOT_INIT: i32 = 4;
    /// The server is shutting down (RPC status 5).
    pub const STOPPING: i32 = 5;
    /// The connection's in-flight limit was reached (RPC status 6).
    pub const FLOW_CONTROL: i32 = 6;
    /// The node does not lead the group; see the leader hint (RPC status 7).
    pub const NOT_RAFT_LEADER: i32 = 7;
    /// No such group on the node (RPC status 8).
    pub const RAFT_GROUP_NOT_FOUND: i32 = 8;
    /// The group exists but is stopped (RPC status 9).
    pub const RAFT_GROUP_STOPPED: i32 = 9;
    /// The deadline passed; the effect of a write is unknown (RPC status 10).
    pub const TIMEOUT: i32 = 10;
    /// The peer broke the framing rules (RPC status 11).
    pub const PROTOCOL_ERROR: i32 = 11;
    /// Connecting failed or the connection was lost (RPC status 12).
    pub const NETWORK_ERROR: i32 = 12;
    /// The client was closed (RPC status 13).
    pub const CLOSED: i32 = 13;

    /// An argument is invalid (null pointer, bad UTF-8, out-of-range integer,
    /// unparsable address); nothing was sent.
    pub const INVALID_ARGUMENT: i32 = dongting_client::INVALID_ARGUMENT as i32;
    /// The operation was cancelled by its caller.
    pub const CANCELLED: i32 = 901;
    /// The runtime was shut down before the operation finished, or the
    /// operation was started after the shutdown.
    pub const RUNTIME_SHUT_DOWN: i32 = 902;
    /// The runtime was created in another process: this process is a child
    /// created by `fork()`; create a new runtime in the child.
    pub const FORKED: i32 = 903;
    /// The caller asked for an API version this library does not provide.
    pub const UNSUPPORTED_API_VERSION: i32 = 904;
    /// A server configuration is invalid (the message names the field).
    pub const CONFIG_ERROR: i32 = 905;
    /// An embedded server could not start (ports, data directory, recovery).
    pub const SERVER_START_FAILED: i32 = 906;
    /// An operating-system resource (threads, memory) could not be obtained.
    pub const RESOURCE: i32 = 907;
    /// The result is not of the kind asked for (e.g. nodes of a put).
    pub const WRONG_RESULT_KIND: i32 = 908;
    /// The operation has not completed yet.
    pub const PENDING: i32 = 909;
    /// The embedded server was already stopped.
    pub const SERVER_STOPPED: i32 = 910;
    /// A write failed after an attempt of it may have reached a server: it
    /// may or may not have been applied (never retryable; the message names
    /// the last failure). Read the keys to learn what happened.
    pub const UNKNOWN_OUTCOME: i32 = dongting_client::UNKNOWN_OUTCOME as i32;

    /// DtKV: an unexpected internal condition.
    pub const KV_INTERNAL: i32 = super::KV_CODE_BASE + 1;
    /// DtKV: the key does not exist (remove, updateTtl).
    pub const KV_NOT_FOUND: i32 = super::KV_CODE_BASE + 2;
    /// DtKV: a value operation hit a directory.
    pub const KV_IS_DIR: i32 = super::KV_CODE_BASE + 4;
    /// DtKV: a directory operation hit a value.
    pub const KV_NOT_DIR: i32 = super::KV_CODE_BASE + 5;
    /// DtKV: the key's parent is not a directory.
    pub const KV_PARENT_NOT_DIR: i32 = super::KV_CODE_BASE + 6;
    /// DtKV: the key breaks the key syntax rules.
    pub const KV_INVALID_KEY: i32 = super::KV_CODE_BASE + 7;
    /// DtKV: the value is not acceptable (e.g. empty for put).
    pub const KV_INVALID_VALUE: i32 = super::KV_CODE_BASE + 8;
    /// DtKV: the parent directory does not exist.
    pub const KV_PARENT_NOT_FOUND: i32 = super::KV_CODE_BASE + 9;
    /// DtKV: remove of a directory that has children.
    pub const KV_DIR_NOT_EMPTY: i32 = super::KV_CODE_BASE + 10;
    /// DtKV: the key is longer than the limit.
    pub const KV_KEY_TOO_LONG: i32 = super::KV_CODE_BASE + 11;
    /// DtKV: the value is larger than the limit.
    pub const KV_VALUE_TOO_LARGE: i32 = super::KV_CODE_BASE + 12;
    /// DtKV: compareAndSet found a different value.
    pub const KV_CAS_MISMATCH: i32 = super::KV_CODE_BASE + 14;
    /// DtKV: the temporary node belongs to another client.
    pub const KV_NOT_OWNER: i32 = super::KV_CODE_BASE + 18;
    /// DtKV: a TTL operation on a node that is not temporary.
    pub const KV_NOT_TEMP_NODE: i32 = super::KV_CODE_BASE + 19;
    /// DtKV: a plain write on a temporary node.
    pub const KV_IS_TEMP_NODE: i32 = super::KV_CODE_BASE + 20;
    /// DtKV: a TTL of zero or above the maximum.
    pub const KV_INVALID_TTL: i32 = super::KV_CODE_BASE + 22;
    /// DtKV: a batch with no keys or too many keys.
    pub const KV_TOO_MANY_KEYS: i32 = super::KV_CODE_BASE + 101;
    /// DtKV: a retried write whose first result is no longer kept.
    pub const KV_SEQ_TOO_OLD: i32 = super::KV_CODE_BASE + 102;
}

/// Why an operation failed: a stable code, a message, whether sending the
/// same request again is safe, and the leader when the node was not the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
    retryable: bool,
    leader: Option<String>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error with the given code and message (not retryable, no hint).
    pub fn new(code: i32, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            retryable: false,
            leader: None,
        }
    }

    /// [`code::INVALID_ARGUMENT`] with a message.
    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(code::INVALID_ARGUMENT, message)
    }

    /// The stable code (see the module documentation for its ranges).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// A human-readable description (no stability promise).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the server guarantees the request was not executed, so
    /// sending it again, also to another node, is safe even for a write.
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// `host:port` of the group's leader service endpoint, when the answer was
    /// NOT_RAFT_LEADER and named one.
    pub fn leader_hint(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The symbolic name of a code (`"NOT_FOUND"`, `"TIMEOUT"`...), or
    /// `"UNKNOWN"`.
    pub fn code_name(code: i32) -> &'static str {
        match code {
            0 => "OK",
            900 => "INVALID_ARGUMENT",
            901 => "CANCELLED",
            902 => "RUNTIME_SHUT_DOWN",
            903 => "FORKED",
            904 => "UNSUPPORTED_API_VERSION",
            905 => "CONFIG_ERROR",
            906 => "SERVER_START_FAILED",
            907 => "RESOURCE",
            908 => "WRONG_RESULT_KIND",
            909 => "PENDING",
            910 => "SERVER_STOPPED",
            code::UNKNOWN_OUTCOME => "UNKNOWN_OUTCOME",
            c if (1..900).contains(&c) => match Status(c as u32).name() {
                Some(n) => n,
                None => "UNKNOWN",
            },
            c if c > KV_CODE_BASE => {
                let kv = (c - KV_CODE_BASE) as u16;
                KvError::all_codes()
                    .iter()
                    .find(|(n, _)| *n == kv)
                    .map(|(_, name)| *name)
                    .unwrap_or("UNKNOWN")
            }
            _ => "UNKNOWN",
        }
    }

    pub(crate) fn from_kv(e: &KvError) -> Error {
        Error {
            code: KV_CODE_BASE + i32::from(e.code()),
            message: e.to_string(),
            retryable: e.is_retryable(),
            leader: None,
        }
    }

    fn from_rpc(e: &RpcError) -> Error {
        let status = i32::try_from(e.status().0).unwrap_or(code::SYS_ERROR);
        Error {
            code: status,
            message: e.to_string(),
            retryable: e.retryable(),
            leader: e.leader_hint().map(|h| format!("{}:{}", h.host, h.port)),
        }
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match &e {
            ClientError::Kv { error, .. } => Error::from_kv(error),
            ClientError::Rpc(r) => Error::from_rpc(r),
            ClientError::Timeout(_) => Error::new(code::TIMEOUT, e.to_string()),
            ClientError::InvalidArgument(m) => Error::invalid_argument(m.clone()),
            ClientError::Closed => Error::new(code::CLOSED, e.to_string()),
            ClientError::UnknownOutcome(_) => Error::new(code::UNKNOWN_OUTCOME, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_codes_do_not_collide_with_status_codes() {
        let e = Error::from(ClientError::Kv {
            error: KvError::NotFound("a".into()),
            index: 3,
        });
        assert_eq!(e.code(), code::KV_NOT_FOUND);
        assert_eq!(Error::code_name(e.code()), "NOT_FOUND");
        assert_eq!(Error::code_name(code::TIMEOUT), "TIMEOUT");
        assert_eq!(Error::code_name(code::FORKED), "FORKED");
        assert_eq!(Error::code_name(code::KV_CAS_MISMATCH), "CAS_MISMATCH");
        assert_eq!(Error::code_name(-5), "UNKNOWN");
    }

    #[test]
    fn an_unknown_outcome_is_never_retryable() {
        let e = Error::from(ClientError::UnknownOutcome(
            "last failure: NETWORK_ERROR(12): no leader known".into(),
        ));
        assert_eq!(e.code(), code::UNKNOWN_OUTCOME);
        assert_eq!(Error::code_name(e.code()), "UNKNOWN_OUTCOME");
        assert!(!e.retryable());
        assert!(e.message().contains("no leader known"), "{e}");
    }
}
