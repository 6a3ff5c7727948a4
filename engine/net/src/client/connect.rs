//! Connections per peer: reuse, reconnect with bounded backoff, connecting
//! and the handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::codec::{
    FrameDecoder, FrameHeader, FrameType, HEADER_LEN, MAX_HANDSHAKE_FRAME_BYTES, PROTOCOL_VERSION,
    encode_frame,
};
use crate::command::CMD_HANDSHAKE;
use crate::conn::{READ_BUF_BYTES, WriteQueue, lock};
use crate::error::RpcError;
use crate::proto::{ClientInfo, ServerInfo, decode_handshake_response, encode_handshake_request};

use super::RpcClient;
use super::conn::{ClientConn, KEEPALIVE_FRACTION, NEXT_CONN_ID, Pending, remote_error};
use super::reader::read_loop;

pub(super) struct PeerState {
    pub(super) conn: Option<Arc<ClientConn>>,
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
}

pub(super) struct Peer {
    pub(super) state: Mutex<PeerState>,
    pub(super) connecting: tokio::sync::Mutex<()>,
}

impl Peer {
    pub(super) fn live_conn(&self) -> Option<Arc<ClientConn>> {
        lock(&self.state)
            .conn
            .as_ref()
            .filter(|c| c.is_live())
            .cloned()
    }
}

impl RpcClient {
    /// The live connection to `addr`, without waiting or connecting.
    pub(super) fn live_connection(&self, addr: SocketAddr) -> Option<Arc<ClientConn>> {
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

    pub(super) fn peer(&self, addr: SocketAddr) -> Arc<Peer> {
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

    pub(super) async fn connection(
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
        if server.protocol_version != u32::from(PROTOCOL_VERSION) {
            warn!(peer = %addr, theirs = server.protocol_version, ours = PROTOCOL_VERSION, "server speaks another protocol version; closing");
            return Err(RpcError::Protocol(format!(
                "server {addr} speaks protocol version {}; this client speaks version {PROTOCOL_VERSION}",
                server.protocol_version
            )));
        }
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
