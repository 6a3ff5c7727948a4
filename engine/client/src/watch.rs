//! Watch streams: the events of keys and directories, resumed across
//! reconnects and node failures.
//!
//! A [`WatchStream`] is registered on one server (any node of the group:
//! followers serve watches from their own applied state). The server pushes
//! the events of every applied index above the stream's position, in index
//! order. The stream remembers the highest index it has complete (events and
//! heartbeats both carry it) and, when its node dies, its connection drops,
//! the server cancels it, or nothing arrives for twice the server's heartbeat
//! interval, registers again on the same or another node from that index: no
//! event is lost or delivered twice. When the node's history no longer reaches
//! back to that index, the stream yields [`WatchItem::Compacted`]: the caller
//! re-reads its keys (see the item's documentation) and events continue.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{KvError, NodeState, WatchEvent};
use dongting_net::{Push, PushListener, RpcError, Status};
use dongting_proto::watch::{
    CMD_KV_UNWATCH, CMD_KV_WATCH, CMD_KV_WATCH_PUSH, MAX_KEYS_PER_WATCH, WatchPush, WatchPushKind,
    WatchRequest, WatchResponse, decode_push, encode_unwatch,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{ClientError, KvClient, lock};

/// Push frames queued for one stream before it is considered too slow; past
/// this the stream drops what arrives and registers again from its position.
pub const WATCH_QUEUE_FRAMES: usize = 256;
/// How often the client checks the connections its watch streams use.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// One thing a watch stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// A change: the raft index of the write, the key, its state and value
    /// after the write. Events come in index order, each once.
    Event(WatchEvent),
    /// The serving node no longer holds the events between the stream's
    /// position and `resume_index` (history compacted, or the stream fell too
    /// far behind). Re-read the watched keys with a linearizable read (its
    /// index is at least `resume_index`); events continue with indexes above
    /// `resume_index`, and those at or below the read's index are already
    /// reflected in what was read.
    Compacted {
        /// Events continue after this index.
        resume_index: u64,
        /// The lowest index the node's history could resume after.
        history_floor: u64,
    },
}

/// Routes pushes from the connection reader tasks to the streams, and
/// watches the connections the streams are registered on (one check task per
/// client while it has streams, not one timer per stream).
#[derive(Default)]
pub(crate) struct Registry {
    next_id: AtomicU64,
    routes: Mutex<HashMap<u64, Route>>,
    monitor_running: AtomicBool,
}

struct Route {
    tx: mpsc::Sender<WatchPush>,
    signal: Arc<Signal>,
    addr: SocketAddr,
}

/// What the push listener and the connection check tell a stream.
#[derive(Default)]
struct Signal {
    /// A push did not fit the queue; later pushes of the route are dropped
    /// so the stream never skips one silently.
    overflow: AtomicBool,
    /// The connection of the confirmed registration is gone.
    lost: AtomicBool,
    /// The registration was answered (only then is its connection checked).
    confirmed: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Registry {
    /// The push listener of the client's connections.
    pub(crate) fn listener(self: &Arc<Self>) -> PushListener {
        let reg = self.clone();
        Arc::new(move |p: Push| reg.on_push(p))
    }

    fn on_push(&self, p: Push) {
        if p.command != CMD_KV_WATCH_PUSH {
            debug!(command = p.command, "push with an unknown command dropped");
            return;
        }
        let push = match decode_push(&p.body) {
            Ok(x) => x,
            Err(e) => {
                warn!(peer = %p.addr, error = %e, "malformed watch push dropped");
                return;
            }
        };
        let routes = lock(&self.routes);
        let Some(r) = routes.get(&push.watch_id) else {
            return;
        };
        if r.signal.overflow.load(Ordering::Acquire) {
            return;
        }
        if r.tx.try_send(push).is_err() {
            r.signal.overflow.store(true, Ordering::Release);
            r.signal.notify.notify_one();
        }
    }

    fn add(
        self: &Arc<Self>,
        rpc: &dongting_net::RpcClient,
        tx: mpsc::Sender<WatchPush>,
        signal: Arc<Signal>,
        addr: SocketAddr,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.routes).insert(id, Route { tx, signal, addr });
        if !self.monitor_running.swap(true, Ordering::AcqRel) {
            tokio::spawn(monitor(Arc::downgrade(self), rpc.clone()));
        }
        id
    }

    fn remove(&self, id: u64) {
        lock(&self.routes).remove(&id);
    }
}

/// Flags the streams whose confirmed registration's connection is gone.
/// Runs while the client has streams; the next stream starts it again.
async fn monitor(reg: std::sync::Weak<Registry>, rpc: dongting_net::RpcClient) {
    loop {
        tokio::time::sleep(CHECK_INTERVAL).await;
        let Some(reg) = reg.upgrade() else { return };
        // Collected first: the connection locks are never taken under the
        // routes lock (the push listener takes them in the other order).
        let confirmed: Vec<(SocketAddr, Arc<Signal>)> = {
            let routes = lock(&reg.routes);
            if routes.is_empty() {
                reg.monitor_running.store(false, Ordering::Release);
                return;
            }
            routes
                .values()
                .filter(|r| r.signal.confirmed.load(Ordering::Acquire))
                .map(|r| (r.addr, r.signal.clone()))
                .collect()
        };
        let mut state: HashMap<SocketAddr, bool> = HashMap::new();
        for (addr, signal) in confirmed {
            let up = *state.entry(addr).or_insert_with(|| rpc.is_connected(addr));
            if !up && !signal.lost.swap(true, Ordering::AcqRel) {
                signal.notify.notify_one();
            }
        }
    }
}

/// The stream's registration on one server.
#[derive(Debug, Clone, Copy)]
struct Reg {
    addr: SocketAddr,
    watch_id: u64,
    /// The server answered the registration.
    confirmed: bool,
}

/// A watch on some keys of one group. Not `Clone`; `Send`. See the module
/// documentation for its guarantees.
///
/// Memory: a queue of at most [`WATCH_QUEUE_FRAMES`] push frames plus the
/// events of the frame being handed out.
pub struct WatchStream {
    client: KvClient,
    group: u32,
    keys: Vec<Bytes>,
    last_index: u64,
    tx: mpsc::Sender<WatchPush>,
    rx: mpsc::Receiver<WatchPush>,
    signal: Arc<Signal>,
    reg: Option<Reg>,
    items: VecDeque<WatchItem>,
    heartbeat: Duration,
    last_heard: Instant,
    next_server: usize,
    closed: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("group", &self.group)
            .field("last_index", &self.last_index)
            .field("server", &self.reg.map(|r| r.addr))
            .finish()
    }
}

impl KvClient {
    /// Watches `keys` of `group`: each key reports changes to itself and to
    /// every key under it (a directory's whole subtree; the empty key is the
    /// whole tree). Events with a raft index above `from_index` are
    /// delivered; `from_index` 0 starts at the serving node's applied index.
    ///
    /// Returns once a server accepted the watch (within the client's
    /// timeout). The stream then reconnects by itself. Fails at once on an
    /// invalid key, no key or more than 1024.
    pub async fn watch(
        &self,
        group: u32,
        keys: &[&[u8]],
        from_index: u64,
    ) -> Result<WatchStream, ClientError> {
        if keys.is_empty() || keys.len() > MAX_KEYS_PER_WATCH {
            return Err(ClientError::InvalidArgument(format!(
                "a watch names 1 to {MAX_KEYS_PER_WATCH} keys, not {}",
                keys.len()
            )));
        }
        let max_key = dongting_kv::KvLimits::default().max_key_bytes;
        for k in keys {
            dongting_kv::validate_key(k, max_key, true)
                .map_err(|error| ClientError::Kv { error, index: 0 })?;
        }
        if self.inner.cfg.servers.is_empty() {
            return Err(ClientError::InvalidArgument("no servers".into()));
        }
        let (tx, rx) = mpsc::channel(WATCH_QUEUE_FRAMES);
        let mut s = WatchStream {
            client: self.clone(),
            group,
            keys: keys.iter().map(|k| Bytes::copy_from_slice(k)).collect(),
            last_index: from_index,
            tx,
            rx,
            signal: Arc::new(Signal::default()),
            reg: None,
            items: VecDeque::new(),
            heartbeat: Duration::from_secs(60),
            last_heard: Instant::now(),
            next_server: self.inner.rr.fetch_add(1, Ordering::Relaxed),
            closed: false,
        };
        s.register(Some(Instant::now() + self.timeout)).await?;
        Ok(s)
    }
}

impl WatchStream {
    /// The next event or notice. Waits as long as it takes, reconnecting as
    /// needed; fails only with [`ClientError::Closed`] (the stream or client
    /// was closed) or when the servers refuse the watch for good (the group
    /// is not hosted anywhere, invalid keys). Cancel-safe: dropping the
    /// future loses nothing.
    pub async fn next(&mut self) -> Result<WatchItem, ClientError> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(item);
            }
            if self.closed {
                return Err(ClientError::Closed);
            }
            if !self.reg.is_some_and(|r| r.confirmed) {
                self.register(None).await?;
            }
            if self.check() {
                continue;
            }
            let silence_end = self.last_heard + self.silence();
            tokio::select! {
                p = self.rx.recv() => {
                    if let Some(p) = p {
                        self.take(p);
                    }
                }
                _ = self.signal.notify.notified() => {}
                _ = tokio::time::sleep_until(silence_end.into()) => {}
            }
        }
    }

    /// The highest raft index this stream is complete up to: every event at
    /// or below it was yielded or is buffered. Resume a new stream from it.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The service address of the server the stream is registered on.
    pub fn server(&self) -> Option<SocketAddr> {
        self.reg.map(|r| r.addr)
    }

    /// Removes the watch from its server (waiting at most the client's
    /// timeout) and ends the stream; `next` then fails with CLOSED.
    pub async fn close(&mut self) {
        self.closed = true;
        self.items.clear();
        if let Some(r) = self.reg.take() {
            self.client.inner.watches.remove(r.watch_id);
            let body = encode_unwatch(self.group, r.watch_id);
            let _ = self
                .client
                .inner
                .rpc
                .call(r.addr, CMD_KV_UNWATCH, &body, self.client.timeout)
                .await;
        }
    }

    /// Handles one push of any registration of this stream.
    fn take(&mut self, p: WatchPush) {
        let Some(reg) = self.reg else { return };
        if p.watch_id != reg.watch_id {
            return;
        }
        self.last_heard = Instant::now();
        let before = self.last_index;
        match p.kind {
            WatchPushKind::Events => {
                for e in p.events {
                    if e.index > before {
                        self.items.push_back(WatchItem::Event(e));
                    }
                }
            }
            WatchPushKind::Heartbeat => {}
            WatchPushKind::Compacted => {
                debug!(group = self.group, message = %p.message, "watch history compacted");
                self.items.push_back(WatchItem::Compacted {
                    resume_index: p.progress_index.max(before),
                    history_floor: p.history_floor,
                });
            }
            WatchPushKind::Cancelled => {
                debug!(group = self.group, message = %p.message, "watch cancelled by the server");
                self.drop_registration(true);
                return;
            }
        }
        self.last_index = self.last_index.max(p.progress_index);
    }

    /// How long the stream waits for any push before asking its server again.
    fn silence(&self) -> Duration {
        self.heartbeat * 2 + Duration::from_secs(1)
    }

    /// Handles overflow, a lost connection and silence; true when it changed
    /// the registration.
    fn check(&mut self) -> bool {
        if self.signal.overflow.load(Ordering::Acquire) {
            // Everything still queued precedes the dropped push: take it,
            // then register again from the position it leaves.
            while let Ok(p) = self.rx.try_recv() {
                self.take(p);
            }
            debug!(
                group = self.group,
                "watch queue overflowed; registering again"
            );
            self.drop_registration(false);
            return true;
        }
        if self.signal.lost.load(Ordering::Acquire) {
            debug!(group = self.group, "watch connection lost");
            self.drop_registration(true);
            return true;
        }
        if self.last_heard.elapsed() >= self.silence() {
            // Ask the server whether it still has the watch (it registers it
            // again from our position when it does not).
            self.last_heard = Instant::now();
            if let Some(r) = &mut self.reg {
                r.confirmed = false;
            }
            return true;
        }
        false
    }

    /// Forgets the current registration (telling its server when it is
    /// reachable); `next_node` moves the next attempt to another server.
    fn drop_registration(&mut self, next_node: bool) {
        if let Some(r) = self.reg.take() {
            self.client.inner.watches.remove(r.watch_id);
            // The route is gone: nothing sets these for it any more.
            self.signal.confirmed.store(false, Ordering::Release);
            self.signal.lost.store(false, Ordering::Release);
            self.signal.overflow.store(false, Ordering::Release);
            if !next_node {
                let rpc = self.client.inner.rpc.clone();
                let body = encode_unwatch(self.group, r.watch_id);
                let timeout = self.client.timeout;
                tokio::spawn(async move {
                    let _ = rpc.call(r.addr, CMD_KV_UNWATCH, &body, timeout).await;
                });
            } else {
                self.next_server += 1;
            }
        }
    }

    /// Registers (or confirms) the stream on some server, trying them in
    /// turn with backoff, until `deadline` if one is given.
    async fn register(&mut self, deadline: Option<Instant>) -> Result<(), ClientError> {
        let servers = self.client.inner.cfg.servers.clone();
        let mut backoff = self.client.inner.cfg.min_backoff;
        let mut not_found = 0usize;
        loop {
            if self.client.inner.permits.is_closed() {
                self.closed = true;
                return Err(ClientError::Closed);
            }
            let reg = match self.reg {
                Some(r) => r,
                None => {
                    let addr = servers[self.next_server % servers.len()];
                    let watch_id = self.client.inner.watches.add(
                        &self.client.inner.rpc,
                        self.tx.clone(),
                        self.signal.clone(),
                        addr,
                    );
                    let r = Reg {
                        addr,
                        watch_id,
                        confirmed: false,
                    };
                    self.reg = Some(r);
                    r
                }
            };
            let req = WatchRequest {
                group_id: self.group,
                watch_id: reg.watch_id,
                keys: self.keys.clone(),
                from_index: self.last_index,
            };
            let mut timeout = self.client.timeout;
            if let Some(d) = deadline {
                timeout = timeout.min(d.saturating_duration_since(Instant::now()));
                if timeout.is_zero() {
                    return Err(ClientError::Timeout(self.client.timeout));
                }
            }
            let r = self
                .client
                .inner
                .rpc
                .call(reg.addr, CMD_KV_WATCH, &req.encode(), timeout)
                .await;
            match r.map_err(Some).and_then(|r| {
                WatchResponse::decode(&r.body).map_err(|e| {
                    warn!(error = %e, "malformed watch response");
                    None
                })
            }) {
                Ok(resp) => {
                    if self.last_index == 0 {
                        self.last_index = resp.start_index;
                    }
                    self.heartbeat = Duration::from_millis(resp.heartbeat_ms.max(1));
                    self.last_heard = Instant::now();
                    if let Some(r) = &mut self.reg {
                        r.confirmed = true;
                    }
                    self.signal.confirmed.store(true, Ordering::Release);
                    return Ok(());
                }
                Err(e) => {
                    let status = e.as_ref().map(RpcError::status);
                    if status == Some(Status::CLOSED) {
                        self.closed = true;
                        return Err(ClientError::Closed);
                    }
                    if status == Some(Status::CLIENT_ERROR) {
                        let e = e.map(ClientError::Rpc).unwrap_or(ClientError::Kv {
                            error: KvError::InvalidCommand("malformed watch response".into()),
                            index: 0,
                        });
                        return Err(e);
                    }
                    if status == Some(Status::RAFT_GROUP_NOT_FOUND) {
                        not_found += 1;
                        if not_found >= servers.len() * 2 {
                            return Err(e.map(ClientError::Rpc).unwrap_or(ClientError::Closed));
                        }
                    }
                    debug!(group = self.group, server = %reg.addr, status = ?status, "watch registration failed; trying the next server");
                    self.drop_registration(true);
                    let mut pause = backoff;
                    if let Some(d) = deadline {
                        pause = pause.min(d.saturating_duration_since(Instant::now()));
                    }
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(self.client.inner.cfg.max_backoff);
                }
            }
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        if let Some(r) = self.reg.take() {
            self.client.inner.watches.remove(r.watch_id);
            if !self.closed
                && let Ok(h) = tokio::runtime::Handle::try_current()
            {
                let rpc = self.client.inner.rpc.clone();
                let body = encode_unwatch(self.group, r.watch_id);
                h.spawn(async move {
                    let _ = rpc
                        .call(r.addr, CMD_KV_UNWATCH, &body, Duration::from_secs(1))
                        .await;
                });
            }
        }
    }
}

/// Text form of a node state, for printing events.
pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Absent => "absent",
        NodeState::Value => "value",
        NodeState::Dir => "dir",
        NodeState::Lock => "lock",
    }
}
