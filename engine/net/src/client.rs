//! The client side: one multiplexed connection per peer, calls matched to
//! responses by request id, deadlines, flow control, reconnect with bounded
//! backoff, server pushes, graceful close.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{AcquireError, Notify, Semaphore, SemaphorePermit, TryAcquireError, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::codec::{
    DEFAULT_MAX_FRAME_BYTES, FLAG_CLOSING, Frame, FrameDecoder, FrameHeader, FrameType, HEADER_LEN,
    MAX_HANDSHAKE_FRAME_BYTES, PROTOCOL_VERSION, encode_frame,
};
use crate::command::{CMD_HANDSHAKE, CMD_PING};
use crate::conn::{MIN_READ_SPACE_BYTES, QueueError, READ_BUF_BYTES, WriteQueue, lock};
use crate::error::RpcError;
use crate::proto::{
    ClientInfo, ServerInfo, decode_error_body, decode_handshake_response, encode_handshake_request,
};

/// Client settings. Limits apply per connection (one connection per peer).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Identity sent in the handshake (application name, instance id).
    pub client_id: String,
    /// Process id sent in the handshake. Default: this process's id.
    pub process_id: u64,
    /// Largest frame accepted from a server, header included. Default 5 MiB.
    pub max_frame_bytes: u32,
    /// Calls awaiting a response at once; further calls wait for a permit or
    /// fail fast (see [`CallOptions::wait_for_permit`]). Lowered to the
    /// server's limit after the handshake. Default 10,000.
    pub max_in_flight_requests: u32,
    /// Request body bytes awaiting a response at once. Lowered to the
    /// server's limit after the handshake. Default 256 MiB.
    pub max_in_flight_bytes: u64,
    /// Bytes queued for writing beyond which one-way sends fail with
    /// FLOW_CONTROL. Default 32 MiB.
    pub max_pending_one_way_bytes: usize,
    /// Time for TCP connect plus handshake. Default 3 s.
    pub connect_timeout: Duration,
    /// First pause after a failed connect. Default 50 ms.
    pub reconnect_backoff_min: Duration,
    /// Longest pause between connect attempts (the backoff doubles up to
    /// this). Default 2 s.
    pub reconnect_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            client_id: String::from("dongting-rust-client"),
            process_id: u64::from(std::process::id()),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight_requests: 10_000,
            max_in_flight_bytes: 256 * 1024 * 1024,
            max_pending_one_way_bytes: 32 * 1024 * 1024,
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
        }
    }
}

/// Per-call options.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    /// Time from the call until the response must have arrived. It also
    /// bounds connecting and waiting for a flow-control permit; the rest is
    /// sent to the server as the request's remaining timeout.
    pub timeout: Duration,
    /// When the in-flight limit is reached: `true` waits for a permit until the
    /// deadline, `false` fails at once with FLOW_CONTROL.
    pub wait_for_permit: bool,
}

impl CallOptions {
    /// Options with `timeout` that wait for a permit.
    pub fn new(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout,
            wait_for_permit: true,
        }
    }
}

/// A successful response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The command of the request.
    pub command: u16,
    /// The response body: a zero-copy slice of the read buffer.
    pub body: Bytes,
}

/// A frame the server pushed without a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The server it came from.
    pub addr: SocketAddr,
    /// The command number (meaning defined by the pushing component).
    pub command: u16,
    /// The body: a zero-copy slice of the read buffer.
    pub body: Bytes,
}

/// Receives pushes. Runs on the connection's reader task: it must be quick and
/// must not block (hand the push to a channel if there is work to do).
pub type PushListener = Arc<dyn Fn(Push) + Send + Sync>;

/// Identity hasher for request ids: they are sequential, so hashing them again
/// buys nothing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        // Spread the id over the high bits too, which hashbrown uses for tags.
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A call waiting for its response: where to deliver it, and when to give up.
struct Waiter {
    tx: oneshot::Sender<Result<Frame, RpcError>>,
    deadline: Instant,
    timeout_ms: u64,
}

/// A call's flow-control permits: one request, and its body's bytes.
type Permits<'a> = (SemaphorePermit<'a>, SemaphorePermit<'a>);

type Pending = HashMap<u32, Waiter, BuildHasherDefault<IdHasher>>;

/// How often the deadline sweeper of a connection with calls in flight looks
/// for expired calls. A call fails with TIMEOUT at most this much after its
/// deadline; one sweep costs O(calls in flight), far less than a timer per call.
const DEADLINE_SWEEP_INTERVAL: Duration = Duration::from_millis(5);

/// A connection to a server that closes idle connections pings when nothing
/// was written for this fraction of the server's idle timeout two checks in a
/// row: the server hears from it at least every half timeout.
const KEEPALIVE_FRACTION: u32 = 4;

/// Source of connection ids, unique within the process.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

struct ClientConn {
    /// Tells this connection from earlier and later ones to the same address.
    id: u64,
    addr: SocketAddr,
    writer: WriteQueue,
    pending: Mutex<Pending>,
    /// Wakes the deadline sweeper when the first call goes in flight.
    pending_added: Notify,
    /// Wakes the keepalive task when the connection closes.
    closed_notify: Notify,
    next_id: AtomicU32,
    closed: AtomicBool,
    request_permits: Semaphore,
    byte_permits: Semaphore,
    max_body_bytes: usize,
    max_pending_one_way_bytes: usize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ClientConn {
    fn is_live(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    fn next_request_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            // 0 is reserved for connection-level errors.
            if id != 0 {
                return id;
            }
        }
    }

    fn one_way(&self, command: u16, body: &[u8]) -> Result<(), RpcError> {
        if body.len() > self.max_body_bytes {
            return Err(RpcError::InvalidRequest(format!(
                "body of {} bytes exceeds the server's limit of {}",
                body.len(),
                self.max_body_bytes
            )));
        }
        let header = FrameHeader::new(FrameType::OneWay, command, 0);
        self.writer
            .push(&header, body, self.max_pending_one_way_bytes)
            .map_err(|e| match e {
                QueueError::Full => RpcError::FlowControl("too many bytes queued".into()),
                QueueError::Closed => self.not_sent("connection closed"),
                QueueError::Encode(e) => RpcError::InvalidRequest(e.to_string()),
            })
    }

    /// Marks the connection dead and fails every pending call.
    fn fail_all(&self, error: &RpcError) {
        self.closed.store(true, Ordering::Release);
        self.writer.close();
        let pending = std::mem::take(&mut *lock(&self.pending));
        for (_, waiter) in pending {
            let _ = waiter.tx.send(Err(error.clone()));
        }
        self.pending_added.notify_one();
        self.closed_notify.notify_waiters();
    }

    /// Takes a request permit and `body_len` byte permits; also says whether
    /// it had to wait for them. The common case, permits available, costs two
    /// atomic operations and no timer.
    async fn acquire<'a>(
        &'a self,
        body_len: usize,
        deadline: Instant,
        wait: bool,
    ) -> Result<(Permits<'a>, bool), RpcError> {
        let bytes = u32::try_from(body_len)
            .map_err(|_| RpcError::InvalidRequest("body too large".into()))?;
        let mut waited = false;
        // Waiting for a permit is the rare path: boxed, to keep calls' futures small.
        let request = match self.request_permits.try_acquire() {
            Ok(permit) => permit,
            Err(e) => {
                waited = true;
                Box::pin(permit_slow_path(
                    self.request_permits.acquire(),
                    e,
                    deadline,
                    wait,
                ))
                .await?
            }
        };
        let bytes = match self.byte_permits.try_acquire_many(bytes) {
            Ok(permit) => permit,
            Err(e) => {
                waited = true;
                Box::pin(permit_slow_path(
                    self.byte_permits.acquire_many(bytes),
                    e,
                    deadline,
                    wait,
                ))
                .await?
            }
        };
        Ok(((request, bytes), waited))
    }

    async fn call(
        &self,
        command: u16,
        body: &[u8],
        deadline: Instant,
        timeout: Duration,
        wait: bool,
        now: Option<Instant>,
    ) -> Result<Response, RpcError> {
        let (_permits, waited) = self.acquire(body.len(), deadline, wait).await?;
        let id = self.next_request_id();
        let now = match now {
            Some(now) if !waited => now,
            _ => Instant::now(),
        };
        let remaining = deadline.saturating_duration_since(now);
        let timeout_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX);
        let call_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if timeout_ms == 0 {
            return Err(RpcError::Timeout {
                timeout_ms: call_timeout_ms,
            });
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if !self.is_live() {
                return Err(self.not_sent("connection closed"));
            }
            if pending.is_empty() {
                self.pending_added.notify_one();
            }
            pending.insert(
                id,
                Waiter {
                    tx,
                    deadline,
                    timeout_ms: call_timeout_ms,
                },
            );
        }
        let mut header = FrameHeader::new(FrameType::Request, command, id);
        header.timeout_ms = timeout_ms;
        if let Err(e) = self.writer.push(&header, body, usize::MAX) {
            lock(&self.pending).remove(&id);
            return Err(match e {
                QueueError::Encode(e) => RpcError::InvalidRequest(e.to_string()),
                QueueError::Closed | QueueError::Full => self.not_sent("connection closed"),
            });
        }
        // The deadline sweeper answers TIMEOUT; a dropped sender means the
        // connection went away.
        match rx.await {
            Ok(result) => result.and_then(into_response),
            Err(_) => Err(RpcError::Network {
                addr: self.addr,
                reason: "connection closed".into(),
                sent: true,
            }),
        }
    }

    /// Fails calls whose deadline has passed, every
    /// [`DEADLINE_SWEEP_INTERVAL`] while any call is in flight; sleeps
    /// otherwise. Ends when the connection is closed.
    async fn sweep_deadlines(&self) {
        loop {
            if !self.is_live() {
                return;
            }
            if lock(&self.pending).is_empty() {
                self.pending_added.notified().await;
                continue;
            }
            tokio::time::sleep(DEADLINE_SWEEP_INTERVAL).await;
            let now = Instant::now();
            let expired: Vec<Waiter> = lock(&self.pending)
                .extract_if(|_, w| w.deadline <= now)
                .map(|(_, w)| w)
                .collect();
            for w in expired {
                let _ = w.tx.send(Err(RpcError::Timeout {
                    timeout_ms: w.timeout_ms,
                }));
            }
        }
    }

    /// Sends a one-way PING each time a whole `every` passed with nothing
    /// written, so a server that closes idle connections never finds this one
    /// idle. Ends when the connection closes.
    async fn keep_alive(&self, every: Duration) {
        let mut seen = self.writer.batches_written();
        loop {
            let closed = self.closed_notify.notified();
            tokio::pin!(closed);
            // Registered before the check, so a close in between is not missed.
            closed.as_mut().enable();
            if !self.is_live() {
                return;
            }
            tokio::select! {
                _ = &mut closed => return,
                _ = tokio::time::sleep(every) => {}
            }
            let written = self.writer.batches_written();
            if written == seen
                && let Err(e) = self.one_way(CMD_PING, &[])
            {
                debug!(peer = %self.addr, error = %e, "keepalive ping not sent");
            }
            seen = written;
        }
    }

    fn not_sent(&self, reason: &str) -> RpcError {
        RpcError::Network {
            addr: self.addr,
            reason: reason.to_owned(),
            sent: false,
        }
    }

    /// Writes what is queued, waits up to `grace` for pending calls, then
    /// closes the connection.
    async fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !lock(&self.pending).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.fail_all(&RpcError::Closed("client closed"));
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            // The writer flushes and the server closes its side after our
            // shutdown; give that a moment, then stop waiting.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_millis(500), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// A permit that was not available at once: fail fast, or wait for it until
/// the deadline.
async fn permit_slow_path<'a>(
    acquire: impl Future<Output = Result<SemaphorePermit<'a>, AcquireError>>,
    error: TryAcquireError,
    deadline: Instant,
    wait: bool,
) -> Result<SemaphorePermit<'a>, RpcError> {
    match error {
        TryAcquireError::Closed => Err(RpcError::Closed("connection closed")),
        TryAcquireError::NoPermits if !wait => {
            Err(RpcError::FlowControl("in-flight limit reached".into()))
        }
        TryAcquireError::NoPermits => tokio::time::timeout_at(deadline.into(), acquire)
            .await
            .map_err(|_| RpcError::FlowControl("no in-flight permit before the deadline".into()))?
            .map_err(|_| RpcError::Closed("connection closed")),
    }
}

fn into_response(frame: Frame) -> Result<Response, RpcError> {
    if frame.header.status.is_success() {
        return Ok(Response {
            command: frame.header.command,
            body: frame.body,
        });
    }
    Err(remote_error(&frame))
}

fn remote_error(frame: &Frame) -> RpcError {
    let (message, leader) = match decode_error_body(&frame.body) {
        Ok(decoded) => decoded,
        Err(e) => (format!("(unreadable error body: {e})"), None),
    };
    RpcError::Remote {
        status: frame.header.status,
        message,
        leader,
    }
}

struct PeerState {
    conn: Option<Arc<ClientConn>>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Peer {
    state: Mutex<PeerState>,
    connecting: tokio::sync::Mutex<()>,
}

impl Peer {
    fn live_conn(&self) -> Option<Arc<ClientConn>> {
        lock(&self.state)
            .conn
            .as_ref()
            .filter(|c| c.is_live())
            .cloned()
    }
}

struct ClientInner {
    config: ClientConfig,
    listener: Option<PushListener>,
    peers: RwLock<HashMap<SocketAddr, Arc<Peer>>>,
    closing: AtomicBool,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let peers = self
            .peers
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for peer in peers.values() {
            if let Some(conn) = lock(&peer.state).conn.take() {
                conn.fail_all(&RpcError::Closed("client dropped"));
            }
        }
    }
}

/// An RPC client: one multiplexed connection per peer address, opened on first
/// use and reopened after a failure with bounded exponential backoff. Cheap to
/// clone (all clones share the connections). Needs a tokio runtime.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<ClientInner>,
}

impl fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcClient")
            .field("client_id", &self.inner.config.client_id)
            .finish()
    }
}

impl RpcClient {
    /// A client without a push listener (pushes are dropped with a debug log).
    pub fn new(config: ClientConfig) -> RpcClient {
        RpcClient::build(config, None)
    }

    /// A client that hands every push from any server to `listener`.
    pub fn with_push_listener(config: ClientConfig, listener: PushListener) -> RpcClient {
        RpcClient::build(config, Some(listener))
    }

    fn build(config: ClientConfig, listener: Option<PushListener>) -> RpcClient {
        RpcClient {
            inner: Arc::new(ClientInner {
                config,
                listener,
                peers: RwLock::new(HashMap::new()),
                closing: AtomicBool::new(false),
            }),
        }
    }

    /// Sends a request and waits for its response, for at most `timeout`.
    /// Waits for a flow-control permit if the in-flight limit is reached.
    ///
    /// Cost: one copy of `body` into the connection's write buffer, one
    /// oneshot channel and one timer. Errors carry a status and
    /// [`RpcError::retryable`].
    ///
    /// (Not an `async fn`: [`RpcClient::call_with`]'s future itself, one level
    /// less to build and move per call.)
    pub fn call<'a>(
        &'a self,
        addr: SocketAddr,
        command: u16,
        body: &'a [u8],
        timeout: Duration,
    ) -> impl Future<Output = Result<Response, RpcError>> + Send + 'a {
        self.call_with(addr, command, body, CallOptions::new(timeout))
    }

    /// [`RpcClient::call`] with explicit options.
    pub fn call_with<'a>(
        &'a self,
        addr: SocketAddr,
        command: u16,
        body: &'a [u8],
        options: CallOptions,
    ) -> impl Future<Output = Result<Response, RpcError>> + Send + 'a {
        self.call_since(addr, command, body, Instant::now(), options)
    }

    /// [`RpcClient::call_with`] for a caller that has just read the clock
    /// (`now`): the deadline is `now + options.timeout`, and the clock is
    /// read again only if the call has to wait to connect or for a permit.
    pub async fn call_since(
        &self,
        addr: SocketAddr,
        command: u16,
        body: &[u8],
        now: Instant,
        options: CallOptions,
    ) -> Result<Response, RpcError> {
        let deadline = now + options.timeout;
        // Connecting is the rare path: boxed, so a call's future stays small
        // (callers keep thousands in flight, and move each one at least once).
        let (conn, now) = match self.live_connection(addr) {
            Some(conn) => (conn, Some(now)),
            None => (Box::pin(self.connection(addr, deadline)).await?, None),
        };
        if body.len() > conn.max_body_bytes {
            return Err(RpcError::InvalidRequest(format!(
                "body of {} bytes exceeds the server's limit of {}",
                body.len(),
                conn.max_body_bytes
            )));
        }
        conn.call(
            command,
            body,
            deadline,
            options.timeout,
            options.wait_for_permit,
            now,
        )
        .await
    }

    /// Sends a one-way message (no response, no delivery guarantee). Connects
    /// first if needed, within `connect_timeout`. Fails with FLOW_CONTROL when
    /// too many bytes wait to be written.
    pub async fn one_way(
        &self,
        addr: SocketAddr,
        command: u16,
        body: &[u8],
    ) -> Result<(), RpcError> {
        let deadline = Instant::now() + self.inner.config.connect_timeout;
        let conn = self.connection(addr, deadline).await?;
        conn.one_way(command, body)
    }

    /// Sends a one-way message on the connection `conn_id` (from
    /// [`RpcClient::connection_id`]) and on no other: never connects. Fails,
    /// with nothing sent, once that connection is closed or replaced. For
    /// senders that set a connection up (a handshake of their own) before
    /// streaming on it, and must notice when it changes underneath them.
    pub fn one_way_on(
        &self,
        addr: SocketAddr,
        conn_id: u64,
        command: u16,
        body: &[u8],
    ) -> Result<(), RpcError> {
        match self.peer(addr).live_conn() {
            Some(conn) if conn.id == conn_id => conn.one_way(command, body),
            _ => Err(RpcError::Network {
                addr,
                reason: "the connection was closed".into(),
                sent: false,
            }),
        }
    }

    /// The id of the live connection to `addr`, if there is one. A later
    /// connection to the same address gets another id.
    pub fn connection_id(&self, addr: SocketAddr) -> Option<u64> {
        self.peer(addr).live_conn().map(|c| c.id)
    }

    /// True when a live connection to `addr` exists.
    pub fn is_connected(&self, addr: SocketAddr) -> bool {
        self.peer(addr).live_conn().is_some()
    }

    /// Graceful close: new calls fail with CLOSED, calls in flight get up to
    /// `grace` to complete, then every connection is flushed and closed.
    pub async fn close(&self, grace: Duration) {
        self.inner.closing.store(true, Ordering::SeqCst);
        let peers: Vec<Arc<Peer>> = self
            .inner
            .peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for peer in peers {
            let conn = lock(&peer.state).conn.take();
            if let Some(conn) = conn {
                conn.shutdown(grace).await;
            }
        }
    }

    /// The live connection to `addr`, without waiting or connecting.
    fn live_connection(&self, addr: SocketAddr) -> Option<Arc<ClientConn>> {
        if self.inner.closing.load(Ordering::Relaxed) {
            return None;
        }
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        peers.get(&addr)?.live_conn()
    }

    fn peer(&self, addr: SocketAddr) -> Arc<Peer> {
        if let Some(peer) = self
            .inner
            .peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&addr)
        {
            return peer.clone();
        }
        let mut peers = self
            .inner
            .peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        peers
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(Peer {
                    state: Mutex::new(PeerState {
                        conn: None,
                        failures: 0,
                        retry_at: None,
                    }),
                    connecting: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    async fn connection(
        &self,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<Arc<ClientConn>, RpcError> {
        if self.inner.closing.load(Ordering::Relaxed) {
            return Err(RpcError::Closed("client closed"));
        }
        let peer = self.peer(addr);
        if let Some(conn) = peer.live_conn() {
            return Ok(conn);
        }
        let not_connected = |reason: String| RpcError::Network {
            addr,
            reason,
            sent: false,
        };
        let _connecting = tokio::time::timeout_at(deadline.into(), peer.connecting.lock())
            .await
            .map_err(|_| not_connected("no connection before the deadline".into()))?;
        if let Some(conn) = peer.live_conn() {
            return Ok(conn);
        }
        let retry_at = lock(&peer.state).retry_at;
        if let Some(retry_at) = retry_at {
            if retry_at > deadline {
                return Err(not_connected(
                    "reconnect backoff outlasts the deadline".into(),
                ));
            }
            tokio::time::sleep_until(retry_at.into()).await;
        }
        let connect_deadline = deadline.min(Instant::now() + self.inner.config.connect_timeout);
        let result = tokio::time::timeout_at(connect_deadline.into(), self.connect(addr))
            .await
            .unwrap_or_else(|_| Err(not_connected("connect timed out".into())));
        let mut state = lock(&peer.state);
        match result {
            Ok(conn) => {
                state.failures = 0;
                state.retry_at = None;
                state.conn = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let config = &self.inner.config;
                let backoff = config
                    .reconnect_backoff_min
                    .saturating_mul(1u32 << state.failures.min(16).saturating_sub(1))
                    .min(config.reconnect_backoff_max);
                state.retry_at = Some(Instant::now() + backoff);
                warn!(peer = %addr, failures = state.failures, backoff_ms = backoff.as_millis() as u64, error = %e, "connect failed");
                Err(e)
            }
        }
    }

    /// Connects, performs the handshake, and starts the reader and writer tasks.
    async fn connect(&self, addr: SocketAddr) -> Result<Arc<ClientConn>, RpcError> {
        let config = &self.inner.config;
        let network = |reason: String| RpcError::Network {
            addr,
            reason,
            sent: false,
        };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| network(format!("connect: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| network(format!("set_nodelay: {e}")))?;
        let (mut reader, mut writer) = stream.into_split();
        let hello = encode_handshake_request(&ClientInfo {
            protocol_version: u32::from(PROTOCOL_VERSION),
            process_id: config.process_id,
            client_id: config.client_id.clone(),
            max_frame_bytes: config.max_frame_bytes,
        });
        let mut out = BytesMut::new();
        let mut header = FrameHeader::new(FrameType::Request, CMD_HANDSHAKE, 1);
        header.timeout_ms = u32::try_from(config.connect_timeout.as_millis()).unwrap_or(u32::MAX);
        encode_frame(&header, &hello, &mut out).map_err(|e| network(e.to_string()))?;
        if out.len() > MAX_HANDSHAKE_FRAME_BYTES as usize {
            return Err(RpcError::InvalidRequest(format!(
                "a client_id of {} bytes makes a handshake of {} bytes, over the {MAX_HANDSHAKE_FRAME_BYTES} \
                 a server accepts before it",
                config.client_id.len(),
                out.len()
            )));
        }
        writer
            .write_all(&out)
            .await
            .map_err(|e| network(format!("handshake write: {e}")))?;
        let decoder = FrameDecoder::new(config.max_frame_bytes);
        let mut buf = BytesMut::with_capacity(READ_BUF_BYTES);
        let frame = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {}
                Err(e) => return Err(RpcError::Protocol(format!("handshake response: {e}"))),
            }
            let n = reader
                .read_buf(&mut buf)
                .await
                .map_err(|e| network(format!("handshake read: {e}")))?;
            if n == 0 {
                return Err(network(
                    "server closed the connection during the handshake".into(),
                ));
            }
        };
        if frame.header.frame_type != FrameType::Response || frame.header.command != CMD_HANDSHAKE {
            return Err(RpcError::Protocol(
                "unexpected frame instead of the handshake response".into(),
            ));
        }
        if !frame.header.status.is_success() {
            return Err(remote_error(&frame));
        }
        let server: ServerInfo = decode_handshake_response(&frame.body)
            .map_err(|e| RpcError::Protocol(e.to_string()))?;
        let max_requests = config
            .max_in_flight_requests
            .min(server.max_in_flight_requests)
            .max(1);
        let max_bytes = config
            .max_in_flight_bytes
            .min(server.max_in_flight_bytes)
            .min(Semaphore::MAX_PERMITS as u64);
        let max_body = (server.max_body_bytes as usize)
            .min((server.max_frame_bytes as usize).saturating_sub(HEADER_LEN));
        info!(peer = %addr, max_in_flight_requests = max_requests, max_body_bytes = max_body, "connected");
        let conn = Arc::new(ClientConn {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            addr,
            writer: WriteQueue::new(),
            pending: Mutex::new(Pending::default()),
            pending_added: Notify::new(),
            closed_notify: Notify::new(),
            next_id: AtomicU32::new(2),
            closed: AtomicBool::new(false),
            request_permits: Semaphore::new(max_requests as usize),
            byte_permits: Semaphore::new(max_bytes as usize),
            max_body_bytes: max_body.min(max_bytes as usize),
            max_pending_one_way_bytes: config.max_pending_one_way_bytes,
            tasks: Mutex::new(Vec::with_capacity(4)),
        });
        let writer_conn = conn.clone();
        let writer_task = tokio::spawn(async move {
            if let Err(e) = writer_conn.writer.run_writer(writer).await {
                debug!(peer = %writer_conn.addr, error = %e, "write failed");
                writer_conn.fail_all(&RpcError::Network {
                    addr: writer_conn.addr,
                    reason: format!("write failed: {e}"),
                    sent: true,
                });
            }
        });
        let reader_conn = conn.clone();
        let listener = self.inner.listener.clone();
        let reader_task = tokio::spawn(async move {
            let error = read_loop(&reader_conn, reader, buf, decoder, listener.as_ref()).await;
            debug!(peer = %reader_conn.addr, error = %error, "connection closed");
            reader_conn.fail_all(&error);
        });
        let sweeper_conn = conn.clone();
        let sweeper_task = tokio::spawn(async move { sweeper_conn.sweep_deadlines().await });
        lock(&conn.tasks).extend([writer_task, reader_task, sweeper_task]);
        if server.idle_timeout_ms > 0 {
            let every =
                Duration::from_millis(u64::from(server.idle_timeout_ms)) / KEEPALIVE_FRACTION;
            let keepalive_conn = conn.clone();
            let keepalive_task =
                tokio::spawn(async move { keepalive_conn.keep_alive(every).await });
            lock(&conn.tasks).push(keepalive_task);
        }
        Ok(conn)
    }
}

/// Hands each response in `ready` to its waiting call (a missing id is a call
/// that already timed out). The lock is held for the lookups only.
fn complete(conn: &ClientConn, ready: &mut Vec<Frame>) {
    if ready.is_empty() {
        return;
    }
    let mut completions = Vec::with_capacity(ready.len());
    {
        let mut pending = lock(&conn.pending);
        for frame in ready.drain(..) {
            if let Some(waiter) = pending.remove(&frame.header.request_id) {
                completions.push((waiter.tx, frame));
            }
        }
    }
    for (tx, frame) in completions {
        let _ = tx.send(Ok(frame));
    }
}

/// Reads responses and pushes until the connection fails; returns why.
async fn read_loop(
    conn: &ClientConn,
    mut reader: OwnedReadHalf,
    mut buf: BytesMut,
    decoder: FrameDecoder,
    listener: Option<&PushListener>,
) -> RpcError {
    let lost = |reason: String| RpcError::Network {
        addr: conn.addr,
        reason,
        sent: true,
    };
    let mut ready: Vec<Frame> = Vec::with_capacity(64);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => match frame.header.frame_type {
                    FrameType::Response if frame.header.request_id == 0 => {
                        let error = remote_error(&frame);
                        warn!(peer = %conn.addr, error = %error, "server closed the connection");
                        // Answers that arrived before the error still count.
                        complete(conn, &mut ready);
                        return error;
                    }
                    FrameType::Response => {
                        if frame.header.flags & FLAG_CLOSING != 0 {
                            // The server closes after this frame: stop sending
                            // here before the caller sees its answer, so its
                            // next call opens a new connection.
                            conn.closed.store(true, Ordering::Release);
                            conn.writer.close();
                        }
                        ready.push(frame);
                    }
                    FrameType::Push => match listener {
                        Some(listener) => listener(Push {
                            addr: conn.addr,
                            command: frame.header.command,
                            body: frame.body,
                        }),
                        None => {
                            debug!(peer = %conn.addr, command = frame.header.command, "push dropped: no listener")
                        }
                    },
                    FrameType::Request | FrameType::OneWay => {
                        warn!(peer = %conn.addr, "server sent a client-only frame type; closing");
                        return RpcError::Protocol("unexpected frame type from the server".into());
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %conn.addr, error = %e, "malformed frame from server; closing");
                    return RpcError::Protocol(e.to_string());
                }
            }
        }
        complete(conn, &mut ready);
        if buf.capacity() - buf.len() < MIN_READ_SPACE_BYTES {
            buf.reserve(READ_BUF_BYTES);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => return lost("server closed the connection".into()),
            Ok(0) => return lost("server closed the connection inside a frame".into()),
            Ok(_) => {}
            Err(e) => return lost(format!("read failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn id_hasher_spreads_sequential_ids() {
        let mut a = IdHasher::default();
        a.write_u32(1);
        let mut b = IdHasher::default();
        b.write_u32(2);
        assert_ne!(a.finish() >> 57, b.finish() >> 57);
    }

    #[test]
    fn statuses_of_local_errors() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let not_sent = RpcError::Network {
            addr,
            reason: String::new(),
            sent: false,
        };
        assert_eq!(not_sent.status(), Status::NETWORK_ERROR);
        assert!(not_sent.retryable());
        let sent = RpcError::Network {
            addr,
            reason: String::new(),
            sent: true,
        };
        assert!(!sent.retryable());
        assert!(RpcError::FlowControl(String::new()).retryable());
        assert!(!RpcError::Timeout { timeout_ms: 1 }.retryable());
    }
}
