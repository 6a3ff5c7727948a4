//! A request as a handler sees it and the [`Responder`] that answers it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::codec::{FrameHeader, FrameType};
use crate::proto::{LeaderHint, encode_error_body};
use crate::status::Status;

use super::connection::{ConnHandle, ServerConn};
use super::stats::bump;

/// Which side of the exchange a [`Request`] came as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A REQ frame: the client waits for the response.
    Call,
    /// A ONE_WAY frame: nothing is sent back, whatever the responder does.
    OneWay,
}

/// One received request. The body is a zero-copy slice of the read buffer;
/// holding it keeps that buffer chunk alive.
pub struct Request {
    pub(super) header: FrameHeader,
    pub(super) body: Bytes,
    pub(super) conn: ConnHandle,
    pub(super) deadline: Option<Instant>,
    pub(super) arrived: Instant,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("command", &self.header.command)
            .field("request_id", &self.header.request_id)
            .field("body_len", &self.body.len())
            .field("conn", &self.conn)
            .finish()
    }
}

impl Request {
    /// The command number.
    pub fn command(&self) -> u16 {
        self.header.command
    }

    /// The client's request id.
    pub fn request_id(&self) -> u32 {
        self.header.request_id
    }

    /// The header flags.
    pub fn flags(&self) -> u16 {
        self.header.flags
    }

    /// Whether the client waits for a response.
    pub fn kind(&self) -> RequestKind {
        match self.header.frame_type {
            FrameType::OneWay => RequestKind::OneWay,
            _ => RequestKind::Call,
        }
    }

    /// The body (opaque to net; the handler verifies it).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The connection the request came on.
    pub fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    /// When the client stops waiting: the arrival of the frame's first byte
    /// plus the remaining timeout it carried. `None` when it carried none.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// When the frame's first byte arrived (read once by the connection for
    /// the deadline; request timings start here at no further clock read).
    pub fn arrived(&self) -> Instant {
        self.arrived
    }

    /// True when the deadline has passed: a handler that queued the request
    /// checks this before executing it, and skips it if true.
    pub fn is_expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Answers one request exactly once, from any thread. Consuming methods send
/// the answer; dropping it unanswered sends SYS_ERROR. For one-way requests
/// nothing is ever sent. Releases the request's flow-control share when it
/// answers or drops.
pub struct Responder {
    pub(super) conn: Option<Arc<ServerConn>>,
    pub(super) command: u16,
    pub(super) request_id: u32,
    pub(super) body_len: u32,
    pub(super) one_way: bool,
    pub(super) deadline: Option<Instant>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("command", &self.command)
            .field("request_id", &self.request_id)
            .field("answered", &self.conn.is_none())
            .finish()
    }
}

impl Responder {
    /// The request's deadline (see [`Request::deadline`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True when the request's deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The connection the request came on, for pushing to that client later
    /// (`None` once answered). Cost: one reference-count bump.
    pub fn conn(&self) -> Option<ConnHandle> {
        self.conn.clone().map(ConnHandle)
    }

    /// Answers SUCCESS with `body`. A body over the client's frame limit is
    /// replaced by SYS_ERROR. Cost: one copy of `body` into the write buffer.
    pub fn ok(mut self, body: &[u8]) {
        if let Some(conn) = self.finish() {
            if body.len() > conn.max_response_body() {
                warn!(
                    conn = conn.id,
                    command = self.command,
                    len = body.len(),
                    "response too large"
                );
                conn.send_error(
                    self.command,
                    self.request_id,
                    Status::SYS_ERROR,
                    "response body exceeds the client's frame limit",
                );
                return;
            }
            let header = FrameHeader::new(FrameType::Response, self.command, self.request_id);
            conn.send(&header, body);
        }
    }

    /// Answers with an error `status` (not SUCCESS) and `message`.
    pub fn error(mut self, status: Status, message: &str) {
        debug_assert!(!status.is_success(), "error() with SUCCESS");
        if let Some(conn) = self.finish() {
            conn.send_error(self.command, self.request_id, status, message);
        }
    }

    /// Answers NOT_RAFT_LEADER with the leader hint, when known.
    pub fn not_leader(mut self, message: &str, leader: Option<&LeaderHint>) {
        if let Some(conn) = self.finish() {
            let mut header = FrameHeader::new(FrameType::Response, self.command, self.request_id);
            header.status = Status::NOT_RAFT_LEADER;
            conn.send(&header, &encode_error_body(message, leader));
        }
    }

    /// For a body that failed verification: answers CLIENT_ERROR with
    /// `reason`, counts it, and closes the connection (a peer that sends
    /// malformed bodies is not trusted with more).
    pub fn reject_malformed(mut self, reason: &str) {
        let Some(conn) = self.conn.take() else { return };
        release(&conn, self.body_len);
        bump(&conn.server.counters.bad_body);
        warn!(conn = conn.id, peer = %conn.peer, command = self.command, reason, "malformed body");
        if !self.one_way {
            conn.send_closing_error(self.command, self.request_id, Status::CLIENT_ERROR, reason);
        }
        ConnHandle(conn).close();
    }

    /// Releases flow control; returns the connection when an answer should be
    /// sent (not one-way, not past the deadline).
    fn finish(&mut self) -> Option<Arc<ServerConn>> {
        let conn = self.conn.take()?;
        release(&conn, self.body_len);
        if self.one_way {
            return None;
        }
        if self.is_expired() {
            bump(&conn.server.counters.late_responses);
            return None;
        }
        Some(conn)
    }
}

fn release(conn: &ServerConn, body_len: u32) {
    conn.in_flight_bytes
        .fetch_sub(u64::from(body_len), Ordering::AcqRel);
    conn.in_flight_requests.fetch_sub(1, Ordering::AcqRel);
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.conn.is_some() {
            if !self.one_way
                && let Some(conn) = &self.conn
            {
                bump(&conn.server.counters.dropped_responders);
                debug!(
                    conn = conn.id,
                    command = self.command,
                    "responder dropped unanswered"
                );
            }
            if let Some(conn) = self.finish() {
                conn.send_error(
                    self.command,
                    self.request_id,
                    Status::SYS_ERROR,
                    "the request was dropped without an answer",
                );
            }
        }
    }
}
