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
//!
//! [`codes()`] lists every code with its name, meaning and retry safety; the
//! C header, the bindings and the docs are tested against it.

use dongting_client::ClientError;
use dongting_kv::KvError;
use dongting_net::{RpcError, Status};

/// Offset added to a DtKV error code to form its facade code.
pub const KV_CODE_BASE: i32 = 1000;

/// Declares every code of the facade once. Each entry becomes a constant in
/// [`code`] and a row of [`codes()`]: RPC status codes take their number, name
/// and meaning from [`Status::CODES`], DtKV codes from [`KvError::CODES`], and
/// the facade's own codes from the entry (its documentation is its meaning).
macro_rules! error_codes {
    (
        rpc { $( $(#[$rdoc:meta])* $rname:ident; )* }
        facade { $( $(#[doc = $fdoc:literal])* $fname:ident = $fvalue:expr; )* }
        kv { $( $(#[$kdoc:meta])* $kname:ident = $kcode:ident; )* }
    ) => {
        /// Stable error codes. Each binding exports the same numbers; [`codes()`]
        /// lists them with their names and meanings.
        pub mod code {
            use super::{KV_CODE_BASE, KvError, Status};

            /// No error.
            pub const OK: i32 = 0;
            $( $(#[$rdoc])* pub const $rname: i32 = Status::$rname.0 as i32; )*
            $( $(#[doc = $fdoc])* pub const $fname: i32 = $fvalue; )*
            $( $(#[$kdoc])* pub const $kname: i32 = KV_CODE_BASE + KvError::$kcode as i32; )*

            /// Every constant of this module but [`OK`], by its Rust name.
            #[cfg(test)]
            pub(crate) const CONSTANTS: &[(&str, i32)] = &[
                $( (stringify!($rname), $rname), )*
                $( (stringify!($fname), $fname), )*
                $( (stringify!($kname), $kname), )*
            ];
        }

        /// The codes raised by the facade itself, with their meanings.
        const FACADE_CODES: &[(i32, &str, &str)] = &[
            $( (code::$fname, stringify!($fname), concat!($($fdoc),*).trim_ascii()), )*
        ];
    };
}

error_codes! {
    rpc {
        /// The request is invalid; retrying it fails again (RPC status 1).
        CLIENT_ERROR;
        /// The server failed while executing; the effect is unknown (RPC status 2).
        SYS_ERROR;
        /// Unknown command on this port (RPC status 3).
        COMMAND_NOT_SUPPORTED;
        /// The server or group is still starting (RPC status 4).
        NOT_INIT;
        /// The server is shutting down (RPC status 5).
        STOPPING;
        /// The connection's in-flight limit was reached (RPC status 6).
        FLOW_CONTROL;
        /// The node does not lead the group; see the leader hint (RPC status 7).
        NOT_RAFT_LEADER;
        /// No such group on the node (RPC status 8).
        RAFT_GROUP_NOT_FOUND;
        /// The group exists but is stopped (RPC status 9).
        RAFT_GROUP_STOPPED;
        /// The deadline passed; the effect of a write is unknown (RPC status 10).
        TIMEOUT;
        /// The peer broke the framing rules (RPC status 11).
        PROTOCOL_ERROR;
        /// Connecting failed or the connection was lost (RPC status 12).
        NETWORK_ERROR;
        /// The client was closed (RPC status 13).
        CLOSED;
    }
    facade {
        /// An argument is invalid (null pointer, bad UTF-8, out-of-range integer,
        /// unparsable address); nothing was sent.
        INVALID_ARGUMENT = dongting_client::INVALID_ARGUMENT as i32;
        /// The operation was cancelled by its caller.
        CANCELLED = 901;
        /// The runtime was shut down before the operation finished, or the
        /// operation was started after the shutdown.
        RUNTIME_SHUT_DOWN = 902;
        /// The runtime was created in another process: this process is a child
        /// created by `fork()`; create a new runtime in the child.
        FORKED = 903;
        /// The caller asked for an API version this library does not provide.
        UNSUPPORTED_API_VERSION = 904;
        /// A server configuration is invalid (the message names the field).
        CONFIG_ERROR = 905;
        /// An embedded server could not start (ports, data directory, recovery).
        SERVER_START_FAILED = 906;
        /// An operating-system resource (threads, memory) could not be obtained.
        RESOURCE = 907;
        /// The result is not of the kind asked for (e.g. nodes of a put).
        WRONG_RESULT_KIND = 908;
        /// The operation has not completed yet.
        PENDING = 909;
        /// The embedded server was already stopped.
        SERVER_STOPPED = 910;
        /// A write failed after an attempt of it may have reached a server: it
        /// may or may not have been applied (never retryable; the message names
        /// the last failure). Read the keys to learn what happened.
        UNKNOWN_OUTCOME = dongting_client::UNKNOWN_OUTCOME as i32;
    }
    kv {
        /// DtKV: an unexpected internal condition.
        KV_INTERNAL = INTERNAL;
        /// DtKV: the key does not exist (remove, updateTtl).
        KV_NOT_FOUND = NOT_FOUND;
        /// DtKV: a value operation hit a directory.
        KV_IS_DIR = IS_DIR;
        /// DtKV: a directory operation hit a value.
        KV_NOT_DIR = NOT_DIR;
        /// DtKV: the key's parent is not a directory.
        KV_PARENT_NOT_DIR = PARENT_NOT_DIR;
        /// DtKV: the key breaks the key syntax rules.
        KV_INVALID_KEY = INVALID_KEY;
        /// DtKV: the value is not acceptable (e.g. empty for put).
        KV_INVALID_VALUE = INVALID_VALUE;
        /// DtKV: the parent directory does not exist.
        KV_PARENT_NOT_FOUND = PARENT_NOT_FOUND;
        /// DtKV: remove of a directory that has children.
        KV_DIR_NOT_EMPTY = DIR_NOT_EMPTY;
        /// DtKV: the key is longer than the limit.
        KV_KEY_TOO_LONG = KEY_TOO_LONG;
        /// DtKV: the value is larger than the limit.
        KV_VALUE_TOO_LARGE = VALUE_TOO_LARGE;
        /// DtKV: compareAndSet found a different value.
        KV_CAS_MISMATCH = CAS_MISMATCH;
        /// DtKV: the temporary node or lock belongs to another client.
        KV_NOT_OWNER = NOT_OWNER;
        /// DtKV: a TTL operation on a node that is not temporary.
        KV_NOT_TEMP_NODE = NOT_TEMP_NODE;
        /// DtKV: a plain write on a temporary node.
        KV_IS_TEMP_NODE = IS_TEMP_NODE;
        /// DtKV: a TTL of zero or above the maximum.
        KV_INVALID_TTL = INVALID_TTL;
        /// DtKV: a lock may not be created under a temporary directory.
        KV_UNDER_TEMP_DIR = UNDER_TEMP_DIR;
        /// DtKV: the key's parent is a lock node.
        KV_PARENT_IS_LOCK = PARENT_IS_LOCK;
        /// DtKV: a lock operation on a node that is not a lock.
        KV_NOT_LOCK_NODE = NOT_LOCK_NODE;
        /// DtKV: a value or directory operation on a lock node.
        KV_IS_LOCK = IS_LOCK;
        /// DtKV: the bytes are not a valid DtKV command.
        KV_INVALID_COMMAND = INVALID_COMMAND;
        /// DtKV: a batch with no keys or too many keys.
        KV_TOO_MANY_KEYS = TOO_MANY_KEYS;
        /// DtKV: a retried write whose first result is no longer kept.
        KV_SEQ_TOO_OLD = SEQ_TOO_OLD;
        /// DtKV: the state machine was given a raft index not above the last.
        KV_INDEX_NOT_INCREASING = INDEX_NOT_INCREASING;
        /// DtKV: a watch resume point older than the retained history.
        KV_HISTORY_COMPACTED = HISTORY_COMPACTED;
        /// DtKV: a malformed, truncated or out-of-order snapshot stream.
        KV_INVALID_SNAPSHOT = INVALID_SNAPSHOT;
        /// DtKV: the lock already has the maximum number of waiters.
        KV_TOO_MANY_WAITERS = TOO_MANY_WAITERS;
    }
}

/// Which layer defines a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// An RPC status code of `docs/protocol.md` (1–13).
    Rpc,
    /// An error raised by this facade (900–999).
    Facade,
    /// A DtKV error code `n` of `docs/kv.md`, reported as 1000 + n.
    Kv,
}

/// One row of the error-code table ([`codes()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The stable number, as returned by [`Error::code`].
    pub code: i32,
    /// The stable symbolic name, as returned by [`Error::code_name`]
    /// (`"NOT_FOUND"`, `"TIMEOUT"`); unique across the table.
    pub name: &'static str,
    /// One sentence saying when the code is returned.
    pub meaning: &'static str,
    /// True when every error with this code is safe to resend unchanged.
    /// [`Error::retryable`] is authoritative for one error: a NETWORK_ERROR
    /// is retryable when the request was never sent.
    pub retryable: bool,
    /// The layer that defines the code.
    pub source: CodeSource,
}

impl CodeInfo {
    /// The name of the constant in [`code`] (and, behind a `DT_E_` prefix, in
    /// the C header): the name, with `KV_` before DtKV names.
    pub fn constant_name(&self) -> String {
        match self.source {
            CodeSource::Kv => format!("KV_{}", self.name),
            CodeSource::Rpc | CodeSource::Facade => self.name.to_string(),
        }
    }
}

/// Every error code (success excluded) in code order: RPC status codes, the
/// facade's own codes, then the DtKV codes. Built once, on first use.
pub fn codes() -> &'static [CodeInfo] {
    static CODES: std::sync::OnceLock<Vec<CodeInfo>> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        let rpc = Status::CODES
            .iter()
            .filter(|s| !s.status.is_success())
            .map(|s| CodeInfo {
                code: s.status.0 as i32,
                name: s.name,
                meaning: s.meaning,
                retryable: s.status.retryable(),
                source: CodeSource::Rpc,
            });
        let facade = FACADE_CODES.iter().map(|&(code, name, meaning)| CodeInfo {
            code,
            name,
            meaning,
            retryable: false,
            source: CodeSource::Facade,
        });
        let kv = KvError::CODES.iter().map(|k| CodeInfo {
            code: KV_CODE_BASE + i32::from(k.code),
            name: k.name,
            meaning: k.meaning,
            retryable: k.retryable(),
            source: CodeSource::Kv,
        });
        rpc.chain(facade).chain(kv).collect()
    })
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
        if code == code::OK {
            return "OK";
        }
        codes()
            .iter()
            .find(|c| c.code == code)
            .map_or("UNKNOWN", |c| c.name)
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
    fn the_table_lists_every_status_and_kv_code_once() {
        let table = codes();
        let mut numbers = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for c in table {
            assert!(numbers.insert(c.code), "duplicate code {c:?}");
            assert!(names.insert(c.name), "duplicate name {c:?}");
            assert!(!c.meaning.is_empty(), "{c:?} has no meaning");
            assert_eq!(Error::code_name(c.code), c.name);
        }
        assert!(
            table.windows(2).all(|w| w[0].code < w[1].code),
            "not in code order"
        );
        for s in Status::CODES.iter().filter(|s| !s.status.is_success()) {
            let row = table.iter().find(|c| c.code == s.status.0 as i32);
            assert_eq!(
                row.map(|c| (c.name, c.source)),
                Some((s.name, CodeSource::Rpc))
            );
        }
        for k in KvError::CODES {
            let row = table
                .iter()
                .find(|c| c.code == KV_CODE_BASE + i32::from(k.code));
            assert_eq!(
                row.map(|c| (c.name, c.source)),
                Some((k.name, CodeSource::Kv))
            );
        }
        assert!(table.iter().all(|c| c.code != code::OK));
    }

    #[test]
    fn every_code_has_one_constant_and_every_constant_a_code() {
        let table = codes();
        assert_eq!(code::CONSTANTS.len(), table.len());
        for c in table {
            let name = c.constant_name();
            let constant = code::CONSTANTS.iter().find(|(n, _)| *n == name);
            assert_eq!(constant.map(|(_, v)| *v), Some(c.code), "code::{name}");
        }
    }

    #[test]
    fn retry_safety_follows_the_defining_layer() {
        let find = |code| codes().iter().find(|c| c.code == code).copied();
        assert_eq!(find(code::NOT_RAFT_LEADER).map(|c| c.retryable), Some(true));
        assert_eq!(find(code::TIMEOUT).map(|c| c.retryable), Some(false));
        assert_eq!(
            find(code::UNKNOWN_OUTCOME).map(|c| c.retryable),
            Some(false)
        );
        assert_eq!(
            find(code::KV_TOO_MANY_WAITERS).map(|c| c.retryable),
            Some(true)
        );
        assert_eq!(
            find(code::KV_CAS_MISMATCH).map(|c| c.retryable),
            Some(false)
        );
        let rpc = find(code::NETWORK_ERROR);
        assert!(
            rpc.is_some_and(|c| c.meaning.starts_with("Local only")),
            "{rpc:?}"
        );
    }

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
