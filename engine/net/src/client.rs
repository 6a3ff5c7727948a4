//! The client side: one multiplexed connection per peer, calls matched to
//! responses by request id, deadlines, flow control, reconnect with bounded
//! backoff, server pushes, graceful close.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::conn::lock;
use crate::error::RpcError;

mod conn;
mod connect;
mod reader;

use connect::Peer;

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

    /// Closes the connection to `addr` and forgets the address: calls in
    /// flight on it get up to `grace`, then fail. A later call to `addr`
    /// connects afresh. For a caller that stops talking to a server for good
    /// (a node removed from the servers list).
    pub async fn disconnect(&self, addr: SocketAddr, grace: Duration) {
        let peer = self
            .inner
            .peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&addr);
        let conn = peer.and_then(|p| lock(&p.state).conn.take());
        if let Some(conn) = conn {
            conn.shutdown(grace).await;
        }
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
}
