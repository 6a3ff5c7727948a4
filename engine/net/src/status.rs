//! Status codes carried in the frame header of every response.
//!
//! The numbers are part of the wire protocol and never change meaning; the table
//! is documented in `docs/protocol.md`. Codes 0–999 are reserved for the
//! platform (net, raft, server); an application may define its own codes from
//! [`Status::FIRST_APPLICATION_CODE`] upward.

use std::fmt;

/// A response status code. Unknown numbers round-trip unchanged, so a peer
/// running a newer version can send codes this build does not name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(pub u32);

/// Declares the known codes once: each becomes an associated constant, a row
/// of [`Status::CODES`] (with its documentation as its meaning) and a name.
macro_rules! statuses {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal; )*) => {
        impl Status {
            $( $(#[doc = $doc])* pub const $name: Status = Status($code); )*

            /// Every code this build knows, with its name and meaning, in code
            /// order (SUCCESS first).
            pub const CODES: &'static [StatusCode] = &[
                $( StatusCode {
                    status: Status($code),
                    name: stringify!($name),
                    meaning: concat!($($doc),*).trim_ascii(),
                }, )*
            ];

            /// The stable name of a known code, or `None` for a code this build does not know.
            pub fn name(self) -> Option<&'static str> {
                Some(match self.0 {
                    $( $code => stringify!($name), )*
                    _ => return None,
                })
            }
        }
    };
}

statuses! {
    /// The request succeeded; the body is the command's response body.
    SUCCESS = 0;
    /// The request was invalid (bad arguments, body failing verification,
    /// handshake missing). Retrying the same request fails again.
    CLIENT_ERROR = 1;
    /// The server failed while executing the request (including a handler that
    /// never answered). Whether the request took effect is unknown.
    SYS_ERROR = 2;
    /// The command is unknown on the port it was sent to.
    COMMAND_NOT_SUPPORTED = 3;
    /// The server (or the part of it that owns the command) is still starting.
    NOT_INIT = 4;
    /// The server is shutting down and accepts no new requests.
    STOPPING = 5;
    /// The server's per-connection in-flight limit was reached; the request was
    /// not executed.
    FLOW_CONTROL = 6;
    /// The node is not the raft leader of the group; the error body may carry a
    /// leader hint.
    NOT_RAFT_LEADER = 7;
    /// The raft group id is unknown on this node.
    RAFT_GROUP_NOT_FOUND = 8;
    /// The raft group exists but is stopped.
    RAFT_GROUP_STOPPED = 9;
    /// The deadline passed before an answer arrived (client side) or before the
    /// request was executed (server side).
    TIMEOUT = 10;
    /// The peer broke the framing protocol (bad magic, unsupported version,
    /// oversized frame, unexpected frame type). The connection is closed.
    PROTOCOL_ERROR = 11;
    /// Local only, never on the wire: connecting failed or the connection was
    /// lost.
    NETWORK_ERROR = 12;
    /// Local only, never on the wire: the client was closed.
    CLOSED = 13;
}

/// One row of [`Status::CODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode {
    /// The code.
    pub status: Status,
    /// Its stable name, e.g. `"NOT_RAFT_LEADER"`.
    pub name: &'static str,
    /// What it means, as documented on its constant.
    pub meaning: &'static str,
}

impl Status {
    /// The first code an application may define for itself.
    pub const FIRST_APPLICATION_CODE: u32 = 1000;

    /// True for [`Status::SUCCESS`].
    pub fn is_success(self) -> bool {
        self == Status::SUCCESS
    }

    /// True when the server guarantees the request was not executed, so sending
    /// it again (possibly to another node) is safe even for non-idempotent
    /// commands.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Status::NOT_INIT
                | Status::STOPPING
                | Status::FLOW_CONTROL
                | Status::NOT_RAFT_LEADER
                | Status::RAFT_GROUP_STOPPED
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "STATUS({})", self.0),
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_stable() {
        let table = [
            (Status::SUCCESS, 0, "SUCCESS"),
            (Status::CLIENT_ERROR, 1, "CLIENT_ERROR"),
            (Status::SYS_ERROR, 2, "SYS_ERROR"),
            (Status::COMMAND_NOT_SUPPORTED, 3, "COMMAND_NOT_SUPPORTED"),
            (Status::NOT_INIT, 4, "NOT_INIT"),
            (Status::STOPPING, 5, "STOPPING"),
            (Status::FLOW_CONTROL, 6, "FLOW_CONTROL"),
            (Status::NOT_RAFT_LEADER, 7, "NOT_RAFT_LEADER"),
            (Status::RAFT_GROUP_NOT_FOUND, 8, "RAFT_GROUP_NOT_FOUND"),
            (Status::RAFT_GROUP_STOPPED, 9, "RAFT_GROUP_STOPPED"),
            (Status::TIMEOUT, 10, "TIMEOUT"),
            (Status::PROTOCOL_ERROR, 11, "PROTOCOL_ERROR"),
            (Status::NETWORK_ERROR, 12, "NETWORK_ERROR"),
            (Status::CLOSED, 13, "CLOSED"),
        ];
        for (status, number, name) in table {
            assert_eq!(status.0, number);
            assert_eq!(status.name(), Some(name));
        }
        let listed: Vec<Status> = Status::CODES.iter().map(|c| c.status).collect();
        let expected: Vec<Status> = table.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(listed, expected);
        assert!(
            Status::CODES
                .iter()
                .all(|c| c.status.name() == Some(c.name))
        );
        assert!(Status::CODES[12].meaning.starts_with("Local only"));
        assert_eq!(Status(4711).name(), None);
        assert_eq!(Status(4711).to_string(), "STATUS(4711)");
        assert_eq!(Status::FLOW_CONTROL.to_string(), "FLOW_CONTROL(6)");
    }

    #[test]
    fn retryable_only_when_not_executed() {
        assert!(Status::FLOW_CONTROL.retryable());
        assert!(Status::NOT_RAFT_LEADER.retryable());
        assert!(!Status::SYS_ERROR.retryable());
        assert!(!Status::TIMEOUT.retryable());
        assert!(!Status::CLIENT_ERROR.retryable());
    }
}
