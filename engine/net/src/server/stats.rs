//! The server's counters and the handle that reads them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::conn::lock;

use super::ServerShared;

/// Counters of a server, all since start. Cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections refused because their port's `max_connections` was reached.
    pub connections_refused: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Frames with bad magic bytes.
    pub bad_magic: u64,
    /// Frames with an unsupported protocol version.
    pub bad_version: u64,
    /// Frames longer than the limit, shorter than the header, or with a body
    /// over the body limit.
    pub bad_length: u64,
    /// Frames of a type a server never receives (RESP, PUSH, unknown).
    pub bad_frame_type: u64,
    /// Bodies failing verification (handshake or a handler's own check).
    pub bad_body: u64,
    /// Requests for a command unknown on their port.
    pub unknown_command: u64,
    /// Connections that ended in the middle of a frame.
    pub truncated_frames: u64,
    /// Connections closed for a missing, late or invalid handshake.
    pub handshake_failures: u64,
    /// Requests whose deadline had passed before execution (not executed).
    pub expired_requests: u64,
    /// Responses not sent because the deadline had passed when they were ready.
    pub late_responses: u64,
    /// Requests refused with FLOW_CONTROL.
    pub flow_control_rejections: u64,
    /// Requests refused with STOPPING.
    pub stopping_rejections: u64,
    /// Requests whose responder was dropped unanswered (answered SYS_ERROR).
    pub dropped_responders: u64,
    /// Handshaken connections closed after their port's idle timeout.
    pub idle_closes: u64,
    /// Times a connection stopped reading because the buffer budget had no
    /// room for its next frame.
    pub budget_waits: u64,
    /// Bytes of the buffer budget reserved now.
    pub buffered_bytes: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) connections_accepted: AtomicU64,
    pub(super) connections_refused: AtomicU64,
    pub(super) bad_magic: AtomicU64,
    pub(super) bad_version: AtomicU64,
    pub(super) bad_length: AtomicU64,
    pub(super) bad_frame_type: AtomicU64,
    pub(super) bad_body: AtomicU64,
    pub(super) unknown_command: AtomicU64,
    pub(super) truncated_frames: AtomicU64,
    pub(super) handshake_failures: AtomicU64,
    pub(super) expired_requests: AtomicU64,
    pub(super) late_responses: AtomicU64,
    pub(super) flow_control_rejections: AtomicU64,
    pub(super) stopping_rejections: AtomicU64,
    pub(super) dropped_responders: AtomicU64,
    pub(super) idle_closes: AtomicU64,
    pub(super) budget_waits: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a server's counters ([`RpcServer::stats_handle`](super::RpcServer::stats_handle)).
#[derive(Clone)]
pub struct StatsHandle(pub(super) Arc<ServerShared>);

impl StatsHandle {
    /// A snapshot of the counters.
    pub fn stats(&self) -> ServerStats {
        stats_of(&self.0)
    }
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsHandle")
    }
}

/// The counters of the server sharing `shared`.
pub(super) fn stats_of(shared: &ServerShared) -> ServerStats {
    let c = &shared.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    ServerStats {
        connections_accepted: get(&c.connections_accepted),
        connections_refused: get(&c.connections_refused),
        connections_open: lock(&shared.conns).len() as u64,
        bad_magic: get(&c.bad_magic),
        bad_version: get(&c.bad_version),
        bad_length: get(&c.bad_length),
        bad_frame_type: get(&c.bad_frame_type),
        bad_body: get(&c.bad_body),
        unknown_command: get(&c.unknown_command),
        truncated_frames: get(&c.truncated_frames),
        handshake_failures: get(&c.handshake_failures),
        expired_requests: get(&c.expired_requests),
        late_responses: get(&c.late_responses),
        flow_control_rejections: get(&c.flow_control_rejections),
        stopping_rejections: get(&c.stopping_rejections),
        dropped_responders: get(&c.dropped_responders),
        idle_closes: get(&c.idle_closes),
        budget_waits: get(&c.budget_waits),
        buffered_bytes: shared.budget.used(),
    }
}
