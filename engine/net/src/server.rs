//! The server side: listeners on several ports, one reader and one writer task
//! per connection, handshake, deadlines, flow control and dispatch to
//! [`Handler`]s.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::budget::{BufferBudget, FREE_FRAME_BYTES, Reservation};
use crate::codec::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FRAME_BYTES, FLAG_CLOSING, Frame, FrameDecoder, FrameError,
    FrameHeader, FrameType, HEADER_LEN, MAX_HANDSHAKE_FRAME_BYTES, PROTOCOL_VERSION, announced_len,
};
use crate::command::{CMD_HANDSHAKE, CMD_PING};
use crate::conn::{MIN_READ_SPACE_BYTES, QueueError, READ_BUF_BYTES, WriteQueue, lock};
use crate::error::RpcError;
use crate::proto::{
    ClientInfo, LeaderHint, ServerInfo, decode_handshake_request, encode_error_body,
    encode_handshake_response,
};
use crate::status::Status;

/// Limits and behaviour of a server. Every limit applies per connection unless
/// its name says otherwise.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame accepted, header included. Default 5 MiB.
    pub max_frame_bytes: u32,
    /// Largest request body accepted. Default 4 MiB.
    pub max_body_bytes: u32,
    /// Requests (and one-way messages) executing at once on one connection;
    /// more get FLOW_CONTROL. Default 10,000.
    pub max_in_flight_requests: u32,
    /// Request body bytes executing at once on one connection; more get
    /// FLOW_CONTROL. Default 256 MiB.
    pub max_in_flight_bytes: u64,
    /// Bytes queued for writing to one connection beyond which a push fails
    /// with FLOW_CONTROL. Default 32 MiB.
    pub max_pending_push_bytes: usize,
    /// Bytes all connections together may reserve for incomplete frames
    /// larger than 64 KiB (a frame reserves its whole length before its body
    /// is read, and gives it back once complete). A connection that finds no
    /// room stops reading until some is released. Must hold one frame of
    /// `max_frame_bytes`. Default 256 MiB.
    pub max_buffered_bytes: u64,
    /// Time a new connection has to complete the handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Close the connection after answering an unknown command with
    /// COMMAND_NOT_SUPPORTED. Default true.
    pub close_on_unknown_command: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_in_flight_requests: 10_000,
            max_in_flight_bytes: 256 * 1024 * 1024,
            max_pending_push_bytes: 32 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            close_on_unknown_command: true,
        }
    }
}

/// Executes one command. Called on the connection's reader task, so it must
/// be cheap and never block: answer at once, or move the [`Responder`] to
/// another task and answer there later.
pub trait Handler: Send + Sync + 'static {
    /// Handles `req`; answer through `responder` exactly once (dropping it
    /// answers SYS_ERROR).
    fn handle(&self, req: Request, responder: Responder);
}

impl<F> Handler for F
where
    F: Fn(Request, Responder) + Send + Sync + 'static,
{
    fn handle(&self, req: Request, responder: Responder) {
        self(req, responder)
    }
}

/// The commands one port accepts and their handlers.
#[derive(Clone, Default)]
pub struct CommandSet {
    handlers: HashMap<u16, Arc<dyn Handler>>,
}

impl fmt::Debug for CommandSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut commands: Vec<_> = self.handlers.keys().collect();
        commands.sort();
        f.debug_struct("CommandSet")
            .field("commands", &commands)
            .finish()
    }
}

impl CommandSet {
    /// An empty set. HANDSHAKE and PING are always served and need no entry.
    pub fn new() -> CommandSet {
        CommandSet::default()
    }

    /// Registers `handler` for `command`, replacing an earlier registration.
    pub fn register(&mut self, command: u16, handler: impl Handler) -> &mut CommandSet {
        self.handlers.insert(command, Arc::new(handler));
        self
    }

    /// Registers an already shared handler for `command`.
    pub fn register_arc(&mut self, command: u16, handler: Arc<dyn Handler>) -> &mut CommandSet {
        self.handlers.insert(command, handler);
        self
    }

    /// True when `command` has a handler.
    pub fn contains(&self, command: u16) -> bool {
        self.handlers.contains_key(&command)
    }
}

/// One listening port of a server. Each port has its own connection cap,
/// idle rule and ceiling of the buffer budget, so one port's clients cannot
/// use up what another port keeps for its own.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Name for logs and stats, such as `"replicate"` or `"service"`.
    pub name: String,
    /// Address to bind; port 0 picks a free port (see [`RpcServer::local_addr`]).
    pub addr: SocketAddr,
    /// The commands served on this port.
    pub commands: CommandSet,
    /// Connections open at once on this port, handshaken or not; more are
    /// closed on accept. Default 10,000.
    pub max_connections: usize,
    /// A handshaken connection that sent no frame for this long is closed,
    /// unless requests are in flight on it or something holds it open
    /// ([`ConnHandle::hold`], [`ConnHandle::keep_open_for`]). Announced in
    /// the handshake so that clients ping before it. `None` (the default):
    /// never.
    pub idle_timeout: Option<Duration>,
    /// Most of [`ServerConfig::max_buffered_bytes`] this port's connections
    /// may reserve at once. Must hold one frame of `max_frame_bytes`.
    /// Default: all of it.
    pub max_buffered_bytes: u64,
}

impl PortConfig {
    /// A port with the default limits.
    pub fn new(name: impl Into<String>, addr: SocketAddr, commands: CommandSet) -> PortConfig {
        PortConfig {
            name: name.into(),
            addr,
            commands,
            max_connections: 10_000,
            idle_timeout: None,
            max_buffered_bytes: u64::MAX,
        }
    }
}

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
struct Counters {
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    bad_magic: AtomicU64,
    bad_version: AtomicU64,
    bad_length: AtomicU64,
    bad_frame_type: AtomicU64,
    bad_body: AtomicU64,
    unknown_command: AtomicU64,
    truncated_frames: AtomicU64,
    handshake_failures: AtomicU64,
    expired_requests: AtomicU64,
    late_responses: AtomicU64,
    flow_control_rejections: AtomicU64,
    stopping_rejections: AtomicU64,
    dropped_responders: AtomicU64,
    idle_closes: AtomicU64,
    budget_waits: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct ServerShared {
    config: ServerConfig,
    budget: Arc<BufferBudget>,
    counters: Counters,
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, ConnHandle>>,
    next_conn_id: AtomicU64,
}

struct PortState {
    name: Arc<str>,
    commands: CommandSet,
    /// Position among the server's ports (its slot in the buffer budget).
    index: usize,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    max_buffered_bytes: u64,
    /// Connections open on this port now.
    open: AtomicUsize,
}

/// A running RPC server. Dropping it stops accepting connections but leaves
/// open connections running; call [`RpcServer::shutdown`] to end them.
pub struct RpcServer {
    shared: Arc<ServerShared>,
    ports: Vec<(String, SocketAddr)>,
    acceptors: Vec<JoinHandle<()>>,
}

/// Reads a server's counters ([`RpcServer::stats_handle`]).
#[derive(Clone)]
pub struct StatsHandle(Arc<ServerShared>);

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
fn stats_of(shared: &ServerShared) -> ServerStats {
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

impl fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcServer")
            .field("ports", &self.ports)
            .finish()
    }
}

impl RpcServer {
    /// Binds every port and starts accepting. Must be called inside a tokio
    /// runtime; spawns one accept task per port and two tasks per connection.
    pub async fn start(config: ServerConfig, ports: Vec<PortConfig>) -> std::io::Result<RpcServer> {
        check_limits(&config, &ports)?;
        let shared = Arc::new(ServerShared {
            budget: Arc::new(BufferBudget::new(config.max_buffered_bytes, ports.len())),
            config,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
        });
        let mut bound = Vec::with_capacity(ports.len());
        let mut listeners = Vec::with_capacity(ports.len());
        for (index, port) in ports.into_iter().enumerate() {
            let listener = TcpListener::bind(port.addr).await?;
            let local = listener.local_addr()?;
            info!(port = %port.name, addr = %local, max_connections = port.max_connections, "rpc server listening");
            bound.push((port.name.clone(), local));
            listeners.push((
                listener,
                Arc::new(PortState {
                    name: Arc::from(port.name.as_str()),
                    commands: port.commands,
                    index,
                    max_connections: port.max_connections,
                    idle_timeout: port.idle_timeout,
                    max_buffered_bytes: port.max_buffered_bytes,
                    open: AtomicUsize::new(0),
                }),
            ));
        }
        let acceptors = listeners
            .into_iter()
            .map(|(listener, port)| tokio::spawn(accept_loop(shared.clone(), listener, port)))
            .collect();
        Ok(RpcServer {
            shared,
            ports: bound,
            acceptors,
        })
    }

    /// The bound address of the port named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// Every port's name and bound address, in configuration order.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.ports
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ServerStats {
        stats_of(&self.shared)
    }

    /// A handle that reads [`RpcServer::stats`] from elsewhere (a metrics
    /// endpoint). Cheap to clone.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// Handles of every open connection (for broadcasting pushes).
    pub fn connections(&self) -> Vec<ConnHandle> {
        lock(&self.shared.conns).values().cloned().collect()
    }

    /// Graceful shutdown: stops accepting connections, answers new requests
    /// with STOPPING, waits up to `grace` for requests in flight to be
    /// answered, flushes and closes every connection.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for acceptor in &self.acceptors {
            acceptor.abort();
        }
        let deadline = Instant::now() + grace;
        loop {
            let busy = self
                .connections()
                .iter()
                .any(|c| c.0.in_flight_requests.load(Ordering::Acquire) > 0);
            if !busy || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for conn in self.connections() {
            conn.close();
        }
        // Connections leave the registry once their writer flushed; bound the wait.
        let flush_deadline = Instant::now() + Duration::from_secs(1).max(grace);
        while !lock(&self.shared.conns).is_empty() && Instant::now() < flush_deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        info!("rpc server stopped");
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        for acceptor in &self.acceptors {
            acceptor.abort();
        }
    }
}

/// Refuses limits that cannot work together: a body that does not fit a
/// frame, or a buffer budget (the server's or a port's) too small for one
/// frame, which would leave a reader waiting for room forever.
fn check_limits(config: &ServerConfig, ports: &[PortConfig]) -> std::io::Result<()> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    if config.max_body_bytes as usize + HEADER_LEN > config.max_frame_bytes as usize {
        return Err(invalid(
            "max_body_bytes plus the header must fit in max_frame_bytes".into(),
        ));
    }
    let frame = u64::from(config.max_frame_bytes);
    if config.max_buffered_bytes < frame {
        return Err(invalid(format!(
            "max_buffered_bytes ({}) must hold one frame of max_frame_bytes ({frame})",
            config.max_buffered_bytes
        )));
    }
    for port in ports {
        if port.max_buffered_bytes < frame {
            return Err(invalid(format!(
                "port {}: max_buffered_bytes ({}) must hold one frame of max_frame_bytes ({frame})",
                port.name, port.max_buffered_bytes
            )));
        }
        if port.max_connections == 0 {
            return Err(invalid(format!(
                "port {}: max_connections must be at least 1",
                port.name
            )));
        }
    }
    Ok(())
}

async fn accept_loop(shared: Arc<ServerShared>, listener: TcpListener, port: Arc<PortState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                warn!(port = %port.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Only this task adds to `open`, so check-then-add cannot overshoot.
        if port.open.load(Ordering::Acquire) >= port.max_connections {
            bump(&shared.counters.connections_refused);
            warn!(port = %port.name, %peer, max = port.max_connections, "connection refused: the port's max_connections reached");
            drop(stream);
            continue;
        }
        port.open.fetch_add(1, Ordering::AcqRel);
        bump(&shared.counters.connections_accepted);
        tokio::spawn(run_connection(shared.clone(), port.clone(), stream, peer));
    }
}

pub(crate) struct ServerConn {
    id: u64,
    peer: SocketAddr,
    port: Arc<PortState>,
    server: Arc<ServerShared>,
    writer: WriteQueue,
    client_info: OnceLock<ClientInfo>,
    in_flight_requests: AtomicU32,
    in_flight_bytes: AtomicU64,
    /// Live [`ConnHold`]s: while any exists the connection is never idle.
    holds: AtomicU32,
    /// When the connection was accepted: the origin of `keep_open_until_ms`.
    accepted: Instant,
    /// Not idle before this many milliseconds after `accepted`.
    keep_open_until_ms: AtomicU64,
    close_requested: AtomicBool,
    close_notify: Notify,
    closed: watch::Sender<bool>,
}

impl ServerConn {
    fn send(&self, header: &FrameHeader, body: &[u8]) {
        if let Err(e) = self.writer.push(header, body, usize::MAX) {
            debug!(conn = self.id, peer = %self.peer, error = ?e, "response not queued");
        }
    }

    fn send_error(&self, command: u16, request_id: u32, status: Status, message: &str) {
        let mut header = FrameHeader::new(FrameType::Response, command, request_id);
        header.status = status;
        self.send(&header, &encode_error_body(message, None));
    }

    /// [`ServerConn::send_error`] for the last frame before the connection
    /// closes: marked [`FLAG_CLOSING`] so the client sends nothing more on it.
    fn send_closing_error(&self, command: u16, request_id: u32, status: Status, message: &str) {
        let mut header = FrameHeader::new(FrameType::Response, command, request_id);
        header.status = status;
        header.flags = FLAG_CLOSING;
        self.send(&header, &encode_error_body(message, None));
    }

    /// When this connection becomes idle, given the arrival of its last
    /// frame, or `None` when it is idle at `now`. A connection in use
    /// (requests in flight, holds) is looked at again `idle` later.
    fn idle_at(&self, last_frame: Instant, idle: Duration, now: Instant) -> Option<Instant> {
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

    fn max_response_body(&self) -> usize {
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
pub struct ConnHandle(Arc<ServerConn>);

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
    /// [`PortConfig::idle_timeout`]) while the returned guard lives: for
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
    header: FrameHeader,
    body: Bytes,
    conn: ConnHandle,
    deadline: Option<Instant>,
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
    conn: Option<Arc<ServerConn>>,
    command: u16,
    request_id: u32,
    body_len: u32,
    one_way: bool,
    deadline: Option<Instant>,
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

async fn run_connection(
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

/// A read buffer whose capacity is this much larger than what it holds (after
/// a large frame) is replaced by a small one, so the large allocation is freed
/// once the frame's body is dropped.
const MAX_RETAINED_READ_BUF_BYTES: usize = 256 * 1024;

/// What woke a connection's reader.
enum Wake {
    /// A read finished.
    Read(std::io::Result<usize>),
    /// The frame at the front of the buffer got its share of the budget.
    Reserved(Reservation),
    /// The idle timer fired.
    IdleCheck,
}

/// Reads frames and dispatches them until the connection must close.
///
/// Memory: before the handshake the buffer holds at most
/// [`MAX_HANDSHAKE_FRAME_BYTES`]; after it at most [`FREE_FRAME_BYTES`], or one
/// larger frame once that frame's whole length is reserved in the server's
/// buffer budget (it stops reading while it waits for the share). The buffer
/// grows only as bytes arrive and shrinks back after large frames.
async fn read_loop(conn: &Arc<ServerConn>, mut reader: OwnedReadHalf) {
    let server = &conn.server;
    let config = &server.config;
    let handshake_decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME_BYTES);
    let decoder = FrameDecoder::new(config.max_frame_bytes);
    let mut buf = BytesMut::with_capacity(MAX_HANDSHAKE_FRAME_BYTES as usize);
    // The budget share of the incomplete frame at the front of `buf`.
    let mut reservation: Option<Reservation> = None;
    let mut waiting_counted = false;
    // Arrival time of the first byte of the frame that is still incomplete.
    let mut partial_since: Option<Instant> = None;
    // Arrival of the last complete frame: the idle timeout counts from it.
    let mut last_frame = Instant::now();
    let idle = conn.port.idle_timeout;
    let handshake_timer = tokio::time::sleep(config.handshake_timeout);
    tokio::pin!(handshake_timer);
    let idle_timer = tokio::time::sleep(idle.unwrap_or(config.handshake_timeout));
    tokio::pin!(idle_timer);
    loop {
        if conn.close_requested.load(Ordering::SeqCst) {
            return;
        }
        let handshaken = conn.client_info.get().is_some();
        let room = read_room(&buf, handshaken, reservation.as_ref());
        let need = if room == 0 {
            announced_len(&buf).unwrap_or(0) as u64
        } else {
            make_room(&mut buf, room);
            0
        };
        if room == 0 && !waiting_counted {
            let port = &conn.port;
            reservation = server
                .budget
                .try_reserve(port.index, port.max_buffered_bytes, need);
            if reservation.is_some() {
                continue;
            }
            waiting_counted = true;
            bump(&server.counters.budget_waits);
            debug!(
                conn = conn.id,
                bytes = need,
                "no room in the buffer budget; reading paused"
            );
        }
        let mut window = (&mut buf).limit(room);
        let wake = tokio::select! {
            biased;
            _ = conn.close_notify.notified() => return,
            _ = &mut handshake_timer, if !handshaken => {
                bump(&server.counters.handshake_failures);
                warn!(conn = conn.id, peer = %conn.peer, "no handshake in time; closing");
                return;
            }
            read = reader.read_buf(&mut window), if room > 0 => Wake::Read(read),
            r = server.budget.reserve(conn.port.index, conn.port.max_buffered_bytes, need), if room == 0 => {
                Wake::Reserved(r)
            }
            _ = &mut idle_timer, if handshaken && idle.is_some() => Wake::IdleCheck,
        };
        let read = match wake {
            Wake::Read(read) => read,
            Wake::Reserved(r) => {
                reservation = Some(r);
                waiting_counted = false;
                continue;
            }
            Wake::IdleCheck => {
                let idle = idle.unwrap_or(config.handshake_timeout);
                match conn.idle_at(last_frame, idle, Instant::now()) {
                    Some(at) => {
                        idle_timer.as_mut().reset(at.into());
                        continue;
                    }
                    None => {
                        close_idle(conn, idle);
                        return;
                    }
                }
            }
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    bump(&server.counters.truncated_frames);
                    warn!(conn = conn.id, peer = %conn.peer, bytes = buf.len(), "connection ended inside a frame");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                debug!(conn = conn.id, error = %e, "read failed");
                return;
            }
        }
        let now = Instant::now();
        let mut frame_start = partial_since.take().unwrap_or(now);
        let mut decoded_any = false;
        loop {
            let decoder = if conn.client_info.get().is_some() {
                &decoder
            } else {
                &handshake_decoder
            };
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    decoded_any = true;
                    // The first frame is the one a share was reserved for.
                    reservation = None;
                    if dispatch(conn, frame, frame_start, now).is_err() {
                        return;
                    }
                    frame_start = now;
                }
                Ok(None) => break,
                Err(e) => {
                    reject_frame(conn, &e);
                    return;
                }
            }
        }
        if decoded_any {
            last_frame = now;
        }
        if !buf.is_empty() {
            partial_since = Some(if decoded_any { now } else { frame_start });
        }
        shrink(&mut buf);
    }
}

/// How many bytes the next read may add to `buf`: before the handshake, up to
/// the handshake frame limit; after it, up to [`FREE_FRAME_BYTES`], or up to
/// the end of the front frame once its share is reserved. 0 when the front
/// frame is larger than [`FREE_FRAME_BYTES`] and has no share yet.
fn read_room(buf: &BytesMut, handshaken: bool, reservation: Option<&Reservation>) -> usize {
    if !handshaken {
        return (MAX_HANDSHAKE_FRAME_BYTES as usize).saturating_sub(buf.len());
    }
    let limit = match (announced_len(buf), reservation) {
        (_, Some(r)) => usize::try_from(r.bytes()).unwrap_or(usize::MAX),
        (Some(len), None) if len > FREE_FRAME_BYTES => return 0,
        _ => FREE_FRAME_BYTES,
    };
    limit.saturating_sub(buf.len())
}

/// Gives the next read space for part of `room`, growing the buffer by at
/// most its own size at a time: capacity follows the bytes that arrive, not
/// the length a header announces. A large frame's buffer (its length is
/// reserved) doubles up to the frame's end and never past it.
fn make_room(buf: &mut BytesMut, room: usize) {
    let spare = buf.capacity() - buf.len();
    if spare >= room.min(MIN_READ_SPACE_BYTES) {
        return;
    }
    if room > READ_BUF_BYTES {
        let end = buf.len() + room;
        let target = (buf.capacity().saturating_mul(2))
            .max(buf.len() + READ_BUF_BYTES)
            .min(end);
        let mut grown = BytesMut::with_capacity(target);
        grown.extend_from_slice(buf);
        *buf = grown;
    } else {
        let step = room.min(buf.capacity().max(MIN_READ_SPACE_BYTES));
        buf.reserve(step);
    }
}

/// Replaces a buffer much larger than what it holds by a small copy.
fn shrink(buf: &mut BytesMut) {
    if buf.capacity() > MAX_RETAINED_READ_BUF_BYTES && buf.len() <= READ_BUF_BYTES {
        let mut small = BytesMut::with_capacity(buf.len().max(MIN_READ_SPACE_BYTES));
        small.extend_from_slice(buf);
        *buf = small;
    }
}

/// Closes a connection its port found idle, telling the client why.
fn close_idle(conn: &ServerConn, idle: Duration) {
    bump(&conn.server.counters.idle_closes);
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    info!(conn = conn.id, peer = %conn.peer, port = %conn.port.name, idle_ms, "closing an idle connection");
    conn.send_closing_error(
        0,
        0,
        Status::CLIENT_ERROR,
        &format!("no frame for {idle_ms} ms: the idle connection is closed"),
    );
}

fn reject_frame(conn: &ServerConn, err: &FrameError) {
    let counters = &conn.server.counters;
    match err {
        FrameError::BadMagic { .. } => bump(&counters.bad_magic),
        FrameError::UnsupportedVersion { .. } => bump(&counters.bad_version),
        FrameError::UnknownFrameType { .. } => bump(&counters.bad_frame_type),
        FrameError::FrameTooShort { .. } | FrameError::FrameTooLarge { .. } => {
            bump(&counters.bad_length)
        }
    }
    warn!(conn = conn.id, peer = %conn.peer, error = %err, "malformed frame; closing connection");
    conn.send_closing_error(
        0,
        err.request_id().unwrap_or(0),
        Status::PROTOCOL_ERROR,
        &err.to_string(),
    );
}

/// Marker: the connection must close.
struct Close;

/// `now` is when the bytes of this read arrived: every frame of one read is
/// judged against the same clock reading.
fn dispatch(
    conn: &Arc<ServerConn>,
    frame: Frame,
    frame_start: Instant,
    now: Instant,
) -> Result<(), Close> {
    let header = frame.header;
    let counters = &conn.server.counters;
    let config = &conn.server.config;
    let one_way = match header.frame_type {
        FrameType::Request => false,
        FrameType::OneWay => true,
        FrameType::Response | FrameType::Push => {
            bump(&counters.bad_frame_type);
            warn!(conn = conn.id, peer = %conn.peer, frame_type = ?header.frame_type, "client sent a server-only frame type; closing");
            conn.send_closing_error(
                0,
                0,
                Status::PROTOCOL_ERROR,
                "unexpected frame type from a client",
            );
            return Err(Close);
        }
    };
    if frame.body.len() > config.max_body_bytes as usize {
        bump(&counters.bad_length);
        warn!(conn = conn.id, peer = %conn.peer, len = frame.body.len(), "body over the limit; closing");
        if !one_way {
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::PROTOCOL_ERROR,
                &format!(
                    "body of {} bytes exceeds the limit of {}",
                    frame.body.len(),
                    config.max_body_bytes
                ),
            );
        }
        return Err(Close);
    }
    if conn.client_info.get().is_none() {
        return handshake(conn, &frame, one_way);
    }
    let deadline = (header.timeout_ms > 0)
        .then(|| frame_start + Duration::from_millis(u64::from(header.timeout_ms)));
    if deadline.is_some_and(|d| now >= d) {
        bump(&counters.expired_requests);
        debug!(
            conn = conn.id,
            command = header.command,
            request_id = header.request_id,
            "request expired before execution; dropped"
        );
        return Ok(());
    }
    match header.command {
        CMD_PING => {
            if !one_way {
                conn.send(
                    &FrameHeader::new(FrameType::Response, CMD_PING, header.request_id),
                    &[],
                );
            }
            return Ok(());
        }
        CMD_HANDSHAKE => {
            bump(&counters.handshake_failures);
            warn!(conn = conn.id, peer = %conn.peer, "second handshake; closing");
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::PROTOCOL_ERROR,
                "handshake already done",
            );
            return Err(Close);
        }
        _ => {}
    }
    let Some(handler) = conn.port.commands.handlers.get(&header.command) else {
        bump(&counters.unknown_command);
        warn!(conn = conn.id, peer = %conn.peer, port = %conn.port.name, command = header.command, "command not supported on this port");
        if !one_way {
            let message = format!(
                "command {} is not supported on port {}",
                header.command, conn.port.name
            );
            let status = Status::COMMAND_NOT_SUPPORTED;
            if config.close_on_unknown_command {
                conn.send_closing_error(header.command, header.request_id, status, &message);
            } else {
                conn.send_error(header.command, header.request_id, status, &message);
            }
        }
        return if config.close_on_unknown_command {
            Err(Close)
        } else {
            Ok(())
        };
    };
    if conn.server.stopping.load(Ordering::Relaxed) {
        bump(&counters.stopping_rejections);
        if !one_way {
            conn.send_error(
                header.command,
                header.request_id,
                Status::STOPPING,
                "server is stopping",
            );
        }
        return Ok(());
    }
    // Only this task increments, so check-then-add cannot overshoot.
    let body_len = frame.body.len() as u32;
    let requests = conn.in_flight_requests.load(Ordering::Acquire);
    let bytes = conn.in_flight_bytes.load(Ordering::Acquire);
    if requests >= config.max_in_flight_requests
        || bytes + u64::from(body_len) > config.max_in_flight_bytes
    {
        bump(&counters.flow_control_rejections);
        debug!(conn = conn.id, requests, bytes, "flow control");
        if !one_way {
            conn.send_error(
                header.command,
                header.request_id,
                Status::FLOW_CONTROL,
                "too many requests in flight on this connection",
            );
        }
        return Ok(());
    }
    conn.in_flight_requests.fetch_add(1, Ordering::AcqRel);
    conn.in_flight_bytes
        .fetch_add(u64::from(body_len), Ordering::AcqRel);
    let responder = Responder {
        conn: Some(conn.clone()),
        command: header.command,
        request_id: header.request_id,
        body_len,
        one_way,
        deadline,
    };
    let request = Request {
        header,
        body: frame.body,
        conn: ConnHandle(conn.clone()),
        deadline,
    };
    handler.handle(request, responder);
    Ok(())
}

fn handshake(conn: &Arc<ServerConn>, frame: &Frame, one_way: bool) -> Result<(), Close> {
    let header = frame.header;
    let counters = &conn.server.counters;
    let config = &conn.server.config;
    if header.command != CMD_HANDSHAKE || one_way {
        bump(&counters.handshake_failures);
        warn!(conn = conn.id, peer = %conn.peer, command = header.command, "request before handshake; closing");
        if !one_way {
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::CLIENT_ERROR,
                "the first request must be the handshake",
            );
        }
        return Err(Close);
    }
    let info = match decode_handshake_request(&frame.body) {
        Ok(info) => info,
        Err(e) => {
            bump(&counters.bad_body);
            bump(&counters.handshake_failures);
            warn!(conn = conn.id, peer = %conn.peer, error = %e, "bad handshake body; closing");
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::CLIENT_ERROR,
                &e.to_string(),
            );
            return Err(Close);
        }
    };
    if info.protocol_version != u32::from(PROTOCOL_VERSION) {
        bump(&counters.handshake_failures);
        warn!(conn = conn.id, peer = %conn.peer, version = info.protocol_version, "unsupported protocol version in handshake; closing");
        conn.send_closing_error(
            header.command,
            header.request_id,
            Status::PROTOCOL_ERROR,
            &format!(
                "unsupported protocol version {}; this server speaks {PROTOCOL_VERSION}",
                info.protocol_version
            ),
        );
        return Err(Close);
    }
    if (info.max_frame_bytes as usize) < HEADER_LEN + 1024 {
        bump(&counters.handshake_failures);
        conn.send_closing_error(
            header.command,
            header.request_id,
            Status::CLIENT_ERROR,
            "max_frame_bytes below 1024 plus the header",
        );
        return Err(Close);
    }
    info!(conn = conn.id, peer = %conn.peer, port = %conn.port.name, client_id = %info.client_id, client_pid = info.process_id, "handshake");
    let _ = conn.client_info.set(info);
    let body = encode_handshake_response(&ServerInfo {
        protocol_version: u32::from(PROTOCOL_VERSION),
        max_frame_bytes: config.max_frame_bytes,
        max_body_bytes: config.max_body_bytes,
        max_in_flight_requests: config.max_in_flight_requests,
        max_in_flight_bytes: config.max_in_flight_bytes,
        idle_timeout_ms: conn.port.idle_timeout.map_or(0, |d| {
            u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
        }),
    });
    conn.send(
        &FrameHeader::new(FrameType::Response, CMD_HANDSHAKE, header.request_id),
        &body,
    );
    Ok(())
}
