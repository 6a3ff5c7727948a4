//! The server side: listeners on several ports, one reader and one writer task
//! per connection, handshake, deadlines, flow control and dispatch to
//! [`Handler`]s.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::budget::BufferBudget;
use crate::codec::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};
use crate::conn::lock;

mod connection;
mod dispatch;
mod handler;
mod read_buf;
mod reader;
mod request;
mod stats;

use connection::run_connection;
pub use connection::{ConnHandle, ConnHold};
pub use handler::{CommandSet, Handler};
pub use request::{Request, RequestKind, Responder};
use stats::{Counters, bump, stats_of};
pub use stats::{ServerStats, StatsHandle};

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
