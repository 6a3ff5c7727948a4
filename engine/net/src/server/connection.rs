//! One accepted connection: its shared state, the handles given to handlers, and
//! the task that runs its writer and reader until it closes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tracing::debug;

use crate::codec::{DEFAULT_MAX_FRAME_BYTES, FLAG_CLOSING, FrameHeader, FrameType, HEADER_LEN};
use crate::conn::{QueueError, WriteQueue, lock};
use crate::error::RpcError;
use crate::proto::{ClientInfo, encode_error_body};
use crate::status::Status;

use super::reader::read_loop;
use super::{PortState, ServerShared};

pub(crate) struct ServerConn {
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) port: Arc<PortState>,
    pub(super) server: Arc<ServerShared>,
    pub(super) writer: WriteQueue,
    pub(super) client_info: OnceLock<ClientInfo>,
    pub(super) in_flight_requests: AtomicU32,
    pub(super) in_flight_bytes: AtomicU64,
    /// Live [`ConnHold`]s: while any exists the connection is never idle.
    pub(super) holds: AtomicU32,
    /// When the connection was accepted: the origin of `keep_open_until_ms`.
    pub(super) accepted: Instant,
    /// Not idle before this many milliseconds after `accepted`.
    pub(super) keep_open_until_ms: AtomicU64,
    pub(super) close_requested: AtomicBool,
    pub(super) close_notify: Notify,
    pub(super) closed: watch::Sender<bool>,
}

impl ServerConn {
    pub(super) fn send(&self, header: &FrameHeader, body: &[u8]) {
        if let Err(e) = self.writer.push(header, body, usize::MAX) {
            debug!(conn = self.id, peer = %self.peer, error = ?e, "response not queued");
        }
    }

    pub(super) fn send_error(&self, command: u16, request_id: u32, status: Status, message: &str) {
        let mut header = FrameHeader::new(FrameType::Response, command, request_id);
        header.status = status;
        self.send(&header, &encode_error_body(message, None));
    }

    /// [`ServerConn::send_error`] for the last frame before the connection
    /// closes: marked [`FLAG_CLOSING`] so the client sends nothing more on it.
    pub(super) fn send_closing_error(
        &self,
        command: u16,
        request_id: u32,
        status: Status,
        message: &str,
    ) {
        let mut header = FrameHeader::new(FrameType::Response, command, request_id);
        header.status = status;
        header.flags = FLAG_CLOSING;
        self.send(&header, &encode_error_body(message, None));
    }

    /// When this connection becomes idle, given the arrival of its last
    /// frame, or `None` when it is idle at `now`. A connection in use
    /// (requests in flight, holds) is looked at again `idle` later.
    pub(super) fn idle_at(
        &self,
        last_frame: Instant,
        idle: Duration,
        now: Instant,
    ) -> Option<Instant> {
        if self.holds.load(Ordering::Acquire) > 0
            || self.in_flight_requests.load(Ordering::Acquire) > 0
        {
            return Some(now + idle);
        }
        let kept_ms = self.keep_open_until_ms.load(Ordering::Acquire);
        let kept = self
            .accepted
            .checked_add(Duration::from_millis(kept_ms))
            .unwrap_or(now + idle);
        let at = last_frame.max(kept) + idle;
        (at > now).then_some(at)
    }

    pub(super) fn max_response_body(&self) -> usize {
        let frame = self
            .client_info
            .get()
            .map_or(DEFAULT_MAX_FRAME_BYTES, |c| c.max_frame_bytes);
        (frame as usize).saturating_sub(HEADER_LEN)
    }
}

/// A cloneable handle to one server-side connection: push frames to the
/// client, read its handshake, learn when it closes.
#[derive(Clone)]
pub struct ConnHandle(pub(super) Arc<ServerConn>);

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle")
            .field("id", &self.0.id)
            .field("peer", &self.0.peer)
            .field("port", &&*self.0.port.name)
            .finish()
    }
}

impl ConnHandle {
    /// A number unique among this server's connections.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer
    }

    /// The name of the port the client connected to.
    pub fn port_name(&self) -> &str {
        &self.0.port.name
    }

    /// What the client said in its handshake (`None` before the handshake).
    pub fn client_info(&self) -> Option<&ClientInfo> {
        self.0.client_info.get()
    }

    /// Queues a PUSH frame to the client. Fails with FLOW_CONTROL when more
    /// than `max_pending_push_bytes` wait to be written, with CLOSED when the
    /// connection is gone, and with CLIENT_ERROR when the body exceeds the
    /// client's frame limit. Cost: one copy of `body` into the write buffer.
    pub fn push(&self, command: u16, body: &[u8]) -> Result<(), RpcError> {
        if body.len() > self.0.max_response_body() {
            return Err(RpcError::InvalidRequest(format!(
                "push body of {} bytes exceeds the client's limit",
                body.len()
            )));
        }
        let header = FrameHeader::new(FrameType::Push, command, 0);
        self.0
            .writer
            .push(&header, body, self.0.server.config.max_pending_push_bytes)
            .map_err(|e| match e {
                QueueError::Full => {
                    RpcError::FlowControl("too many bytes queued for this connection".into())
                }
                QueueError::Closed => RpcError::Closed("connection closed"),
                QueueError::Encode(e) => RpcError::InvalidRequest(e.to_string()),
            })
    }

    /// True once the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        *self.0.closed.borrow() || self.0.writer.is_closed()
    }

    /// Completes when the connection has closed (immediately if it already has).
    pub async fn closed(&self) {
        let mut rx = self.0.closed.subscribe();
        // The sender lives in `self`, so waiting can only end with `true`.
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Closes the connection: stops reading, flushes what is queued, closes the
    /// socket. Requests in flight can still answer until the flush completes.
    pub fn close(&self) {
        self.0.close_requested.store(true, Ordering::SeqCst);
        self.0.close_notify.notify_one();
    }

    /// Keeps the connection from being closed for idleness (see
    /// [`PortConfig::idle_timeout`](super::PortConfig::idle_timeout)) while the returned guard lives: for
    /// state that lives on the connection, such as a registered watch.
    /// Cost: one atomic increment, one decrement on drop.
    pub fn hold(&self) -> ConnHold {
        self.0.holds.fetch_add(1, Ordering::AcqRel);
        ConnHold(self.clone())
    }

    /// Keeps the connection from being closed for idleness for `time` from
    /// now (a later call can only extend it): for a client waiting for a push
    /// that may take that long, such as a lock grant.
    pub fn keep_open_for(&self, time: Duration) {
        let since_accept = self.0.accepted.elapsed().saturating_add(time);
        let ms = u64::try_from(since_accept.as_millis()).unwrap_or(u64::MAX);
        self.0.keep_open_until_ms.fetch_max(ms, Ordering::AcqRel);
    }
}

/// Holds a connection open against its port's idle timeout while it lives
/// (from [`ConnHandle::hold`]). Dereferences to the connection's handle.
pub struct ConnHold(ConnHandle);

impl fmt::Debug for ConnHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnHold").field(&self.0).finish()
    }
}

impl std::ops::Deref for ConnHold {
    type Target = ConnHandle;

    fn deref(&self) -> &ConnHandle {
        &self.0
    }
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        self.0.0.holds.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) async fn run_connection(
    server: Arc<ServerShared>,
    port: Arc<PortState>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "set_nodelay failed");
    }
    let (reader, writer) = stream.into_split();
    let id = server.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (closed, _) = watch::channel(false);
    let conn = Arc::new(ServerConn {
        id,
        peer,
        port,
        server: server.clone(),
        writer: WriteQueue::new(),
        client_info: OnceLock::new(),
        in_flight_requests: AtomicU32::new(0),
        in_flight_bytes: AtomicU64::new(0),
        holds: AtomicU32::new(0),
        accepted: Instant::now(),
        keep_open_until_ms: AtomicU64::new(0),
        close_requested: AtomicBool::new(false),
        close_notify: Notify::new(),
        closed,
    });
    lock(&server.conns).insert(id, ConnHandle(conn.clone()));
    debug!(conn = id, %peer, port = %conn.port.name, "connection accepted");
    let writer_conn = conn.clone();
    let writer_task = tokio::spawn(async move {
        let result = writer_conn.writer.run_writer(writer).await;
        if let Err(e) = &result {
            debug!(conn = writer_conn.id, error = %e, "write failed");
            writer_conn.writer.close();
            ConnHandle(writer_conn.clone()).close();
        }
    });
    read_loop(&conn, reader).await;
    conn.writer.close();
    // A client that stopped reading must not hold the connection forever.
    if tokio::time::timeout(Duration::from_secs(5), writer_task)
        .await
        .is_err()
    {
        debug!(conn = id, "writer did not drain in time");
    }
    lock(&server.conns).remove(&id);
    conn.port.open.fetch_sub(1, Ordering::AcqRel);
    conn.closed.send_replace(true);
    debug!(conn = id, %peer, "connection closed");
}
