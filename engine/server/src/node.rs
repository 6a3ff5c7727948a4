//! The node: one process hosting many raft groups behind two ports.
//!
//! [`Node::start`] opens every configured group, starts one task per group and
//! one sender task per peer, and listens on the replicate port (peers and
//! admin tools) and the service port (clients). Handlers run on connection
//! tasks and only route requests to group tasks through bounded queues; the
//! group map is read under a read lock that writers (add/remove group) hold
//! only to insert or remove an entry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{KvLimits, KvStateMachine};
use dongting_net::{
    ClientConfig, CommandSet, PortConfig, Request, Responder, RpcClient, RpcServer, ServerConfig,
    Status,
};
use dongting_raft::{Membership, NodeId, RawNode, Storage};
use dongting_store::{LogConfig, SnapshotPolicy};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::{GroupConfig, NodeConfig};
use crate::group::{AdminOp, GroupMsg, GroupTask, mono_ms, wall_ms};
use crate::ping::{PingGroup, PingInfo, differences};
use crate::storage::{self, GroupStorage};
use dongting_proto::service::{self as proto, AdminRequest, AdminResponse};
use dongting_proto::status::{GroupStatus, NodeStatus, PeerStatus};

/// Inbox size of a group task; a full inbox answers FLOW_CONTROL.
const GROUP_INBOX: usize = 65_536;
/// Raft frames queued for one peer; more are dropped (raft resends).
const PEER_QUEUE: usize = 8_192;
/// How long a status request waits for the groups to publish their state.
const STATUS_REFRESH_WAIT: Duration = Duration::from_millis(500);
/// Pause between config checks of a peer that is down or refused.
const PING_RETRY: Duration = Duration::from_millis(500);

/// A running group as the node sees it.
struct GroupHandle {
    tx: mpsc::Sender<GroupMsg>,
    status: watch::Receiver<GroupStatus>,
    /// Durations of the group log's fsyncs, for metrics.
    fsync: Arc<dongting_store::FsyncStats>,
}

/// One peer of the servers list.
struct Peer {
    id: u32,
    address: String,
    /// Where this node connects to reach the peer: `address` unless `[dial]`
    /// overrides it.
    dial: String,
    tx: mpsc::Sender<Bytes>,
    status: Mutex<PeerStatus>,
}

/// State shared by the handlers, the peer tasks and the group tasks.
pub(crate) struct NodeShared {
    pub(crate) node_id: u32,
    pub(crate) cfg: NodeConfig,
    groups: RwLock<HashMap<u32, GroupHandle>>,
    peers: HashMap<u32, Peer>,
    service_ports: Mutex<HashMap<u32, u16>>,
    /// Connection ids of peers that passed the config check, with their node id.
    checked_conns: Mutex<HashMap<u64, u32>>,
    stopping: AtomicBool,
    start_ms: u64,
    service_port: u16,
    client: RpcClient,
    /// File layer of every group's log (the OS unless a test injects faults).
    fs: Option<Arc<dyn dongting_store::fs::FileSystem>>,
}

impl NodeShared {
    /// `host:replicatePort` of node `id`, from the servers list.
    pub(crate) fn server_address(&self, id: u32) -> Option<&str> {
        self.cfg
            .servers
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.address.as_str())
    }

    /// Service endpoint (host, port) of node `id`, when its port is known.
    pub(crate) fn service_endpoint(&self, id: u32) -> Option<(String, u16)> {
        let addr = self.server_address(id)?;
        let (host, _) = crate::config::parse_address(addr).ok()?;
        let port = if id == self.node_id {
            self.service_port
        } else {
            *lock(&self.service_ports).get(&id)?
        };
        Some((host, port))
    }

    /// Queues a raft frame for a peer; drops it when the peer's queue is full.
    pub(crate) fn send_to_peer(&self, id: u32, body: Bytes) {
        match self.peers.get(&id) {
            Some(p) => {
                if p.tx.try_send(body).is_err() {
                    debug!(peer = id, "peer queue full, raft frame dropped");
                }
            }
            None => debug!(peer = id, "raft message to a node not in servers dropped"),
        }
    }

    fn ping_info(&self, target: u32) -> PingInfo {
        let groups = read(&self.groups)
            .iter()
            .map(|(id, g)| {
                let s = g.status.borrow();
                PingGroup {
                    group_id: *id,
                    members: s.members.clone(),
                    observers: s.observers.clone(),
                    membership_index: s.membership_index,
                }
            })
            .collect();
        PingInfo {
            node_id: self.node_id,
            target_node_id: target,
            process_id: u64::from(std::process::id()),
            start_ms: self.start_ms,
            service_port: self.service_port,
            servers: self
                .cfg
                .servers
                .iter()
                .map(|s| (s.id, s.address.clone()))
                .collect(),
            groups,
        }
    }

    pub(crate) fn group_tx(&self, id: u32) -> Option<mpsc::Sender<GroupMsg>> {
        read(&self.groups).get(&id).map(|g| g.tx.clone())
    }

    /// True once a graceful shutdown started.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// [`Self::node_status`] after every (or the one) group published its
    /// state as of now: a write acknowledged before the call shows in it. A
    /// group that does not answer within [`STATUS_REFRESH_WAIT`] (a stuck
    /// task) is shown as last published.
    pub(crate) async fn current_status(&self, group: Option<u32>) -> NodeStatus {
        let txs: Vec<mpsc::Sender<GroupMsg>> = read(&self.groups)
            .iter()
            .filter(|(id, _)| group.is_none_or(|g| g == **id))
            .map(|(_, g)| g.tx.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + STATUS_REFRESH_WAIT;
        let mut replies = Vec::with_capacity(txs.len());
        for tx in txs {
            let (reply, rx) = oneshot::channel();
            let sent = tokio::time::timeout_at(deadline, tx.send(GroupMsg::Publish(reply))).await;
            if matches!(sent, Ok(Ok(()))) {
                replies.push(rx);
            }
        }
        for rx in replies {
            let _ = tokio::time::timeout_at(deadline, rx).await;
        }
        self.node_status(group)
    }

    /// Each hosted group's fsync durations so far, by group id.
    pub(crate) fn fsync_snapshots(&self) -> Vec<(u32, dongting_store::FsyncSnapshot)> {
        let mut v: Vec<_> = read(&self.groups)
            .iter()
            .map(|(id, g)| (*id, g.fsync.snapshot()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    fn node_status(&self, group: Option<u32>) -> NodeStatus {
        let groups = read(&self.groups);
        let mut gs: Vec<GroupStatus> = groups
            .iter()
            .filter(|(id, _)| group.is_none_or(|g| g == **id))
            .map(|(_, g)| g.status.borrow().clone())
            .collect();
        gs.sort_by_key(|g| g.group_id);
        let mut peers: Vec<PeerStatus> = self
            .peers
            .values()
            .map(|p| lock(&p.status).clone())
            .collect();
        peers.sort_by_key(|p| p.node_id);
        NodeStatus {
            node_id: self.node_id,
            process_id: u64::from(std::process::id()),
            ready: peers.iter().all(|p| p.config_checked),
            peers,
            groups: gs,
            service_port: self.service_port,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
pub struct Node {
    shared: Arc<NodeShared>,
    rpc: RpcServer,
    http: tokio::sync::Mutex<Option<crate::http::HttpServer>>,
    http_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.shared.node_id)
            .finish()
    }
}

impl Node {
    /// Validates `cfg`, opens every configured group (recovering its log and
    /// snapshot) and starts listening. Needs a multi-thread tokio runtime.
    pub async fn start(cfg: NodeConfig) -> Result<Node, String> {
        Node::start_with_fs(cfg, None).await
    }

    /// [`Node::start`] with the file layer of the groups' logs replaced (fault
    /// injection in tests). Not part of the stable API.
    #[doc(hidden)]
    pub async fn start_with_fs(
        cfg: NodeConfig,
        fs: Option<Arc<dyn dongting_store::fs::FileSystem>>,
    ) -> Result<Node, String> {
        cfg.validate().map_err(|e| e.to_string())?;
        crate::failpoints::init()?;
        let (rhost, rport) = cfg.replicate_bind().map_err(|e| e.to_string())?;
        let (shost, sport) = cfg.service_bind().map_err(|e| e.to_string())?;
        let raddr = resolve(&format!("{rhost}:{rport}")).await?;
        let saddr = resolve(&format!("{shost}:{sport}")).await?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("cannot create data_dir {}: {e}", cfg.data_dir.display()))?;
        let client = RpcClient::new(ClientConfig {
            client_id: format!("dongting-node-{}", cfg.node_id),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            max_frame_bytes: cfg.limits.max_frame_bytes,
            ..ClientConfig::default()
        });
        let mut peers = HashMap::new();
        let mut peer_rx = Vec::new();
        for s in cfg.servers.iter().filter(|s| s.id != cfg.node_id) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            peers.insert(
                s.id,
                Peer {
                    id: s.id,
                    address: s.address.clone(),
                    dial: cfg.dial_address(s.id).unwrap_or(&s.address).to_string(),
                    tx,
                    status: Mutex::new(PeerStatus {
                        node_id: s.id,
                        address: s.address.clone(),
                        ..PeerStatus::default()
                    }),
                },
            );
            peer_rx.push((s.id, rx));
        }
        let shared = Arc::new(NodeShared {
            node_id: cfg.node_id,
            groups: RwLock::new(HashMap::new()),
            peers,
            service_ports: Mutex::new(HashMap::new()),
            checked_conns: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            start_ms: wall_ms(),
            service_port: sport,
            client,
            fs,
            cfg: cfg.clone(),
        });
        for g in &cfg.groups {
            let h = open_group(&shared, g).await?;
            write(&shared.groups).insert(g.id, h);
        }
        // Groups added at runtime are not in the file: their directories are,
        // and their membership is in their own hard state or snapshot.
        for id in runtime_groups(&cfg)? {
            let g = GroupConfig::new(id, Vec::new(), Vec::new());
            match open_group(&shared, &g).await {
                Ok(h) => {
                    info!(
                        group = id,
                        "group added at runtime reopened from its directory"
                    );
                    write(&shared.groups).insert(id, h);
                }
                // Not fatal: the groups of the file must still come up.
                Err(e) => warn!(group = id, error = %e, "cannot reopen a group added at runtime"),
            }
        }
        for (id, rx) in peer_rx {
            tokio::spawn(peer_task(shared.clone(), id, rx));
        }
        let server_cfg = ServerConfig {
            max_frame_bytes: cfg.limits.max_frame_bytes,
            max_body_bytes: cfg.limits.max_frame_bytes.saturating_sub(64),
            max_buffered_bytes: cfg.limits.max_buffered_request_bytes,
            ..ServerConfig::default()
        };
        let rpc = RpcServer::start(
            server_cfg,
            vec![
                replicate_port(&cfg, raddr, replicate_commands(&shared)),
                service_port(&cfg, saddr, service_commands(&shared)),
            ],
        )
        .await
        .map_err(|e| format!("cannot listen on {raddr} / {saddr}: {e}"))?;
        let http = match cfg.http_port {
            None => None,
            Some(port) => {
                match crate::http::HttpServer::start(
                    SocketAddr::new(raddr.ip(), port),
                    shared.clone(),
                    rpc.stats_handle(),
                )
                .await
                {
                    Ok(h) => Some(h),
                    Err(e) => {
                        rpc.shutdown(Duration::from_millis(100)).await;
                        return Err(e);
                    }
                }
            }
        };
        let http_addr = http.as_ref().map(crate::http::HttpServer::addr);
        info!(
            node = cfg.node_id,
            replicate = %raddr,
            service = %saddr,
            http = ?http_addr,
            groups = cfg.groups.len(),
            "node started"
        );
        Ok(Node {
            shared,
            rpc,
            http: tokio::sync::Mutex::new(http),
            http_addr,
        })
    }

    /// Address of the replicate port (peers and admin tools).
    pub fn replicate_addr(&self) -> Option<SocketAddr> {
        self.rpc.local_addr("replicate")
    }

    /// Address of the service port (clients).
    pub fn service_addr(&self) -> Option<SocketAddr> {
        self.rpc.local_addr("service")
    }

    /// Address of the HTTP port (metrics, health, status), when `http_port` is set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The node's metrics in the OpenMetrics text format, as `GET /metrics`
    /// answers them (for an application that embeds the node and serves them
    /// on its own endpoint), from the groups' published status (at most a
    /// tick old). Cheap: no IO, never blocks.
    pub fn metrics_text(&self) -> String {
        crate::http::metrics_text(
            &self.shared.node_status(None),
            &self.rpc.stats(),
            &self.shared.fsync_snapshots(),
        )
    }

    /// This node's status and every group's.
    pub fn status(&self) -> NodeStatus {
        self.shared.node_status(None)
    }

    /// Graceful shutdown: refuse new requests, let every group finish the
    /// writes it accepted (up to `grace`), save snapshots where configured,
    /// sync and close the logs, then close the ports.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let groups: Vec<(u32, mpsc::Sender<GroupMsg>)> = read(&self.shared.groups)
            .iter()
            .map(|(id, g)| (*id, g.tx.clone()))
            .collect();
        let mut waits = Vec::new();
        for (id, tx) in groups {
            let (reply, rx) = oneshot::channel();
            if tx
                .send(GroupMsg::Stop {
                    grace,
                    delete: false,
                    reply,
                })
                .await
                .is_ok()
            {
                waits.push((id, rx));
            }
        }
        for (id, rx) in waits {
            if tokio::time::timeout(grace + Duration::from_secs(30), rx)
                .await
                .is_err()
            {
                warn!(group = id, "group did not stop in time");
            }
        }
        if let Some(mut h) = self.http.lock().await.take() {
            h.shutdown(Duration::from_millis(500)).await;
        }
        self.rpc.shutdown(Duration::from_millis(500)).await;
        self.shared.client.close(Duration::from_millis(200)).await;
        info!(node = self.shared.node_id, "node stopped");
    }
}

/// The replicate port: peers and admin tools, with a connection cap of their
/// own and never closed for idleness.
fn replicate_port(cfg: &NodeConfig, addr: SocketAddr, commands: CommandSet) -> PortConfig {
    PortConfig {
        max_connections: cfg.limits.max_peer_connections as usize,
        ..PortConfig::new("replicate", addr, commands)
    }
}

/// The service port: clients, with their own connection cap, an idle timeout
/// and three quarters of the buffer budget at most.
fn service_port(cfg: &NodeConfig, addr: SocketAddr, commands: CommandSet) -> PortConfig {
    PortConfig {
        max_connections: cfg.limits.max_client_connections as usize,
        idle_timeout: (cfg.client_idle_timeout_ms > 0)
            .then(|| Duration::from_millis(cfg.client_idle_timeout_ms)),
        max_buffered_bytes: cfg.service_buffered_bytes(),
        ..PortConfig::new("service", addr, commands)
    }
}

/// Ids of `group-<id>` directories under `data_dir` that the file does not list.
fn runtime_groups(cfg: &NodeConfig) -> Result<Vec<u32>, String> {
    let entries = std::fs::read_dir(&cfg.data_dir)
        .map_err(|e| format!("cannot read data_dir {}: {e}", cfg.data_dir.display()))?;
    let mut ids = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("group-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if e.path().is_dir() && !cfg.groups.iter().any(|g| g.id == id) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// Opens a group's storage and state machine and starts its task.
async fn open_group(shared: &Arc<NodeShared>, g: &GroupConfig) -> Result<GroupHandle, String> {
    let cfg = &shared.cfg;
    let settings = g.effective(&cfg.group_defaults);
    let dir = storage::group_dir(&cfg.data_dir, g.id);
    let notify = Arc::new(Notify::new());
    let n2 = notify.clone();
    let mut log_cfg = LogConfig {
        sync_force: settings.sync_force,
        auto_delete_log_delay_seconds: settings.auto_delete_log_delay_seconds,
        cache_bytes: settings.log_cache_bytes,
        notifier: Some(Arc::new(move || n2.notify_one())),
        ..LogConfig::default()
    };
    if let Some(fs) = &shared.fs {
        log_cfg.fs = fs.clone();
    }
    let ids = |v: &[u32]| v.iter().map(|&i| NodeId::from(i)).collect::<Vec<_>>();
    let seed = Membership::new(&ids(&g.members), &ids(&g.observers));
    let max_keep = settings.max_keep_snapshots.max(1) as usize;
    let d2 = dir.clone();
    let mut rec =
        tokio::task::spawn_blocking(move || GroupStorage::open(&d2, log_cfg, max_keep, seed))
            .await
            .map_err(|e| format!("group {}: opening storage panicked: {e}", g.id))?
            .map_err(|e| format!("group {}: {e}", g.id))?;
    let limits = KvLimits {
        max_key_bytes: cfg.limits.max_key_bytes as usize,
        max_value_bytes: cfg.limits.max_value_bytes as usize,
        // A list answer stays a fifth under the frame for its encoding.
        max_read_bytes: cfg.limits.max_frame_bytes as usize / 5 * 4,
        ..KvLimits::default()
    };
    let mut sm = KvStateMachine::new(limits);
    let mut applied = 0;
    if let Some((index, image)) = rec.snapshot {
        let chunks = storage::unframe_image(&image).map_err(|e| format!("group {}: {e}", g.id))?;
        sm.restore(chunks)
            .map_err(|e| format!("group {}: snapshot at {index} does not restore: {e}", g.id))?;
        applied = index;
    }
    let mut rc = dongting_raft::Config::new(NodeId::from(cfg.node_id));
    rc.elect_timeout_ms = cfg.elect_timeout_ms;
    rc.heartbeat_interval_ms = cfg.heartbeat_interval_ms;
    rc.group = g.id;
    rc.lease_drift_margin_ms = (cfg.elect_timeout_ms / 10).max(1);
    rc.max_inflight_bytes = settings.max_replicate_bytes;
    rc.max_inflight_msgs = (settings.max_replicate_items as usize / 256).clamp(4, 256);
    rc.max_entry_bytes = u64::from(cfg.limits.max_frame_bytes);
    rc.max_apply_entries = crate::group::APPLY_CHUNK;
    rc.applied = applied;
    rc.seed = wall_ms() ^ (u64::from(g.id) << 32) ^ u64::from(std::process::id());
    #[cfg(feature = "failpoints")]
    {
        use crate::failpoints::{Failpoint, active};
        if active(Failpoint::StaleLeaderRead) {
            rc.check_quorum = false;
            rc.lease_read = false;
        }
        if active(Failpoint::LeaseWithoutQuorum) {
            rc.mutation = dongting_raft::Mutation::LeaseWithoutQuorum;
        } else if active(Failpoint::CountUnpersistedSelf) {
            rc.mutation = dongting_raft::Mutation::CountUnpersistedSelf;
        }
    }
    let fsync = rec.storage.log_mut().fsync_stats();
    let initial = rec.storage.initial_state().unwrap_or_default();
    let hs = initial.hard_state;
    let raft =
        RawNode::new(rc, rec.storage, mono_ms()).map_err(|e| format!("group {}: {e}", g.id))?;
    let tick_ms = (cfg.heartbeat_interval_ms / 4).clamp(2, 50);
    let (tx, rx) = mpsc::channel(GROUP_INBOX);
    let (snap_done_tx, snap_done_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(GroupStatus {
        group_id: g.id,
        node_id: cfg.node_id,
        members: g.members.clone(),
        observers: g.observers.clone(),
        ..GroupStatus::default()
    });
    let task = GroupTask {
        group_id: g.id,
        shared: shared.clone(),
        raft,
        sm,
        rx,
        status_tx,
        notify,
        sync_force: settings.sync_force,
        policy: SnapshotPolicy {
            save_snapshot_seconds: settings.save_snapshot_seconds,
            save_snapshot_entries: 0,
            save_snapshot_when_close: settings.save_snapshot_when_close,
            max_keep_snapshots: max_keep,
        },
        delete_logs: settings.delete_logs_after_take_snapshot,
        max_pending_writes: cfg.limits.max_pending_writes as usize,
        max_promote_behind: u64::from(settings.max_replicate_items),
        tick_ms,
        last_snapshot_index: applied,
        leader_changes: 0,
        elections: 0,
        apply_lag_seen: 0,
        apply_lag_warned_at: None,
        dir,
        pending_writes: HashMap::default(),
        pending_write_bytes: 0,
        max_pending_write_bytes: cfg.limits.max_pending_write_bytes,
        held: HashMap::new(),
        reads: HashMap::new(),
        waiting_reads: Vec::new(),
        batch_reads: Vec::new(),
        next_ctx: 0,
        io_backlog: Default::default(),
        persist_waits: Default::default(),
        saved_term_vote: (hs.term, hs.vote),
        last_hs: hs,
        committed_membership: initial.membership,
        last_error: String::new(),
        failed: false,
        stopping: None,
        last_snapshot_at: Instant::now(),
        expire_applied_at: 0,
        snapshot_job: None,
        snapshot_waiters: Vec::new(),
        snap_done_tx,
        snap_done_rx,
        watches: crate::watch::WatchHub::new(g.id, cfg.watch_heartbeat_ms),
        lock_pushers: crate::locks::LockPushers::default(),
        ticks_since_prune: 0,
    };
    task.publish();
    tokio::spawn(task.run());
    info!(group = g.id, applied, "group started");
    Ok(GroupHandle {
        tx,
        status: status_rx,
        fsync,
    })
}

/// Sends queued raft frames to one peer, checking its configuration first on
/// every new connection.
async fn peer_task(shared: Arc<NodeShared>, id: u32, mut rx: mpsc::Receiver<Bytes>) {
    let Some(peer) = shared.peers.get(&id) else {
        return;
    };
    let mut addr: Option<SocketAddr> = None;
    // The connection that passed the config check. Raft frames go on it and
    // on no other: the peer closes a connection that sends raft frames before
    // the check, and a frame that opened a fresh connection by itself would
    // make every later batch race that close.
    let mut checked: Option<u64> = None;
    let mut next_ping = Instant::now();
    let mut batch = Vec::new();
    loop {
        // Without traffic, keep checking the link so status shows whether
        // the peer is reachable and agrees with our configuration.
        let first = match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(b)) => Some(b),
            Ok(None) => break,
            Err(_) => None,
        };
        batch.clear();
        if let Some(b) = first {
            batch.push(b);
        }
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        if shared.stopping.load(Ordering::Relaxed) {
            continue;
        }
        if addr.is_none() {
            addr = resolve(&peer.dial).await.ok();
        }
        let Some(a) = addr else { continue };
        if let Some(conn) = checked
            && shared.client.connection_id(a) != Some(conn)
        {
            checked = None;
            let mut st = lock(&peer.status);
            st.connected = false;
            st.config_checked = false;
            st.message = "connection lost".into();
        }
        let conn = match checked {
            Some(conn) => conn,
            None => {
                if Instant::now() < next_ping {
                    continue;
                }
                let checked_conn = match ping_peer(&shared, peer, a).await {
                    Ok(()) => shared.client.connection_id(a),
                    Err(msg) => {
                        let mut st = lock(&peer.status);
                        if st.message != msg {
                            warn!(peer = id, address = %peer.address, "link to peer not usable: {msg}");
                        }
                        st.connected = shared.client.is_connected(a);
                        st.config_checked = false;
                        st.message = msg;
                        None
                    }
                };
                let Some(conn) = checked_conn else {
                    next_ping = Instant::now() + PING_RETRY;
                    continue;
                };
                checked = Some(conn);
                conn
            }
        };
        for b in &batch {
            if let Err(e) = shared
                .client
                .one_way_on(a, conn, proto::CMD_RAFT_MESSAGES, b)
            {
                debug!(peer = id, error = %e, "raft frame not sent");
                if shared.client.connection_id(a) != Some(conn) {
                    checked = None;
                }
                break;
            }
        }
    }
}

/// The config check ("raft ping") towards one peer.
async fn ping_peer(shared: &NodeShared, peer: &Peer, addr: SocketAddr) -> Result<(), String> {
    let local = shared.ping_info(peer.id);
    let timeout = Duration::from_millis(shared.cfg.rpc_timeout_ms.min(5000));
    let resp = shared
        .client
        .call(addr, proto::CMD_RAFT_PING, &local.encode(), timeout)
        .await
        .map_err(|e| match e.status() {
            Status::CLIENT_ERROR => format!("peer {} refused our configuration: {e}", peer.id),
            _ => format!("cannot reach peer {} at {}: {e}", peer.id, peer.dial),
        })?;
    let remote = PingInfo::decode(&resp.body).map_err(|e| e.to_string())?;
    let diffs = differences(&local, &remote, peer.id);
    lock(&shared.service_ports).insert(peer.id, remote.service_port);
    let mut st = lock(&peer.status);
    st.connected = true;
    st.service_port = remote.service_port;
    if !diffs.is_empty() && shared.cfg.check_config_on_connect {
        return Err(format!(
            "configuration differs from peer {} (digest ours {:x}, theirs {:x}): {}",
            peer.id,
            local.digest(),
            remote.digest(),
            diffs.join("; ")
        ));
    }
    if !diffs.is_empty() {
        warn!(
            peer = peer.id,
            "configuration differs (check disabled): {}",
            diffs.join("; ")
        );
    }
    if !st.config_checked {
        info!(peer = peer.id, address = %peer.address, "config check passed");
    }
    st.config_checked = true;
    st.message.clear();
    Ok(())
}

fn replicate_commands(shared: &Arc<NodeShared>) -> CommandSet {
    let mut c = CommandSet::new();
    let s = shared.clone();
    c.register(
        proto::CMD_RAFT_PING,
        move |req: Request, resp: Responder| handle_ping(&s, req, resp),
    );
    let s = shared.clone();
    c.register(
        proto::CMD_RAFT_MESSAGES,
        move |req: Request, resp: Responder| handle_raft(&s, req, resp),
    );
    let s = shared.clone();
    c.register(proto::CMD_STATUS, move |req: Request, resp: Responder| {
        handle_status(&s, req, resp)
    });
    for cmd in [
        proto::CMD_ADMIN_TRANSFER_LEADER,
        proto::CMD_ADMIN_PREPARE,
        proto::CMD_ADMIN_COMMIT,
        proto::CMD_ADMIN_ABORT,
        proto::CMD_ADMIN_ADD_GROUP,
        proto::CMD_ADMIN_REMOVE_GROUP,
        proto::CMD_ADMIN_SNAPSHOT,
        proto::CMD_ADMIN_LIST_GROUPS,
    ] {
        let s = shared.clone();
        c.register(cmd, move |req: Request, resp: Responder| {
            handle_admin(&s, req, resp)
        });
    }
    c
}

fn service_commands(shared: &Arc<NodeShared>) -> CommandSet {
    let mut c = CommandSet::new();
    let s = shared.clone();
    c.register(proto::CMD_KV_WRITE, move |req: Request, resp: Responder| {
        handle_kv(&s, req, resp, true)
    });
    let s = shared.clone();
    c.register(proto::CMD_KV_READ, move |req: Request, resp: Responder| {
        handle_kv(&s, req, resp, false)
    });
    let s = shared.clone();
    c.register(proto::CMD_STATUS, move |req: Request, resp: Responder| {
        handle_status(&s, req, resp)
    });
    crate::watch::register_commands(&mut c, shared);
    c
}

fn handle_ping(shared: &Arc<NodeShared>, req: Request, resp: Responder) {
    let remote = match PingInfo::decode(req.body()) {
        Ok(p) => p,
        Err(e) => {
            resp.reject_malformed(&e.to_string());
            return;
        }
    };
    let local = shared.ping_info(0);
    let diffs = differences(&local, &remote, 0);
    if !diffs.is_empty() && shared.cfg.check_config_on_connect {
        let msg = format!(
            "node {} refuses the link from node {}: {}",
            shared.node_id,
            remote.node_id,
            diffs.join("; ")
        );
        warn!(peer = remote.node_id, "{msg}");
        lock(&shared.checked_conns).remove(&req.conn().id());
        resp.error(Status::CLIENT_ERROR, &msg);
        return;
    }
    lock(&shared.service_ports).insert(remote.node_id, remote.service_port);
    let conn = req.conn().clone();
    if lock(&shared.checked_conns)
        .insert(conn.id(), remote.node_id)
        .is_none()
    {
        // Forget the connection once it closes.
        let s = shared.clone();
        tokio::spawn(async move {
            conn.closed().await;
            lock(&s.checked_conns).remove(&conn.id());
        });
    }
    if let Some(p) = shared.peers.get(&remote.node_id) {
        lock(&p.status).service_port = remote.service_port;
    }
    resp.ok(&local.encode());
}

fn handle_raft(shared: &NodeShared, req: Request, resp: Responder) {
    drop(resp);
    let from = lock(&shared.checked_conns).get(&req.conn().id()).copied();
    let Some(from) = from else {
        // A link that skipped the config check: make the sender reconnect and check.
        info!(
            conn = req.conn().id(),
            "raft frame on an unchecked connection; closing it"
        );
        req.conn().close();
        return;
    };
    let (group_id, msgs) = match crate::wire::decode_batch(req.body()) {
        Ok(x) => x,
        Err(e) => {
            warn!(peer = from, error = %e, "bad raft frame");
            req.conn().close();
            return;
        }
    };
    if msgs.iter().any(|m| m.from != NodeId::from(from)) {
        warn!(peer = from, "raft frame claims another sender; dropped");
        return;
    }
    match read(&shared.groups).get(&group_id).map(|g| &g.tx) {
        Some(tx) => {
            if tx.try_send(GroupMsg::Raft(msgs)).is_err() {
                debug!(group = group_id, "group inbox full; raft frame dropped");
            }
        }
        None => debug!(
            group = group_id,
            peer = from,
            "raft frame for a group not hosted here"
        ),
    }
}

fn handle_status(shared: &Arc<NodeShared>, req: Request, resp: Responder) {
    let (group, all) = match proto::decode_status_request(req.body()) {
        Ok(x) => x,
        Err(e) => {
            resp.reject_malformed(&e.to_string());
            return;
        }
    };
    if !all && read(&shared.groups).get(&group).is_none() {
        resp.error(
            Status::RAFT_GROUP_NOT_FOUND,
            &format!("group {group} is not hosted on node {}", shared.node_id),
        );
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let which = if all { None } else { Some(group) };
        let st = shared.current_status(which).await;
        resp.ok(&st.encode());
    });
}

fn handle_kv(shared: &NodeShared, req: Request, resp: Responder, write: bool) {
    if shared.stopping.load(Ordering::Relaxed) {
        resp.error(Status::STOPPING, "the node is shutting down");
        return;
    }
    let env = match proto::decode_kv_request(req.body()) {
        Ok(e) => e,
        Err(e) => {
            resp.reject_malformed(&e.to_string());
            return;
        }
    };
    let groups = read(&shared.groups);
    let Some(tx) = groups.get(&env.group_id).map(|g| &g.tx) else {
        resp.error(
            Status::RAFT_GROUP_NOT_FOUND,
            &format!(
                "group {} is not hosted on node {}",
                env.group_id, shared.node_id
            ),
        );
        return;
    };
    let msg = if write {
        // Decoded here, on the connection's task, so the group's task (which
        // every write of the group goes through) only applies it.
        match dongting_kv::decode_command_bytes(&env.body) {
            Ok(cmd) => GroupMsg::Write {
                body: env.body,
                cmd,
                responder: resp,
            },
            Err(e) => {
                resp.error(Status::CLIENT_ERROR, &e.to_string());
                return;
            }
        }
    } else {
        match dongting_kv::decode_read_request(&env.body) {
            Ok(r) => GroupMsg::Read {
                req: r,
                mode: env.read_mode,
                responder: resp,
            },
            Err(e) => {
                resp.error(Status::CLIENT_ERROR, &e.to_string());
                return;
            }
        }
    };
    if let Err(e) = tx.try_send(msg) {
        let (status, text, m) = match e {
            mpsc::error::TrySendError::Full(m) => {
                (Status::FLOW_CONTROL, "group inbox full; retry later", m)
            }
            mpsc::error::TrySendError::Closed(m) => {
                (Status::RAFT_GROUP_STOPPED, "group stopped", m)
            }
        };
        match m {
            GroupMsg::Write { responder, .. } | GroupMsg::Read { responder, .. } => {
                responder.error(status, text)
            }
            _ => {}
        }
    }
}

fn handle_admin(shared: &Arc<NodeShared>, req: Request, resp: Responder) {
    let a = match AdminRequest::decode(req.body()) {
        Ok(a) => a,
        Err(e) => {
            resp.reject_malformed(&e.to_string());
            return;
        }
    };
    let cmd = req.command();
    let shared = shared.clone();
    tokio::spawn(async move {
        let r = admin(&shared, cmd, a).await;
        match r {
            Ok(ok) => resp.ok(&ok.encode()),
            Err((status, msg)) => resp.error(status, &msg),
        }
    });
}

async fn admin(
    shared: &Arc<NodeShared>,
    cmd: u16,
    a: AdminRequest,
) -> Result<AdminResponse, (Status, String)> {
    let not_found = |g: u32| {
        (
            Status::RAFT_GROUP_NOT_FOUND,
            format!("group {g} is not hosted on node {}", shared.node_id),
        )
    };
    let op = match cmd {
        proto::CMD_ADMIN_LIST_GROUPS => {
            let mut ids: Vec<u32> = read(&shared.groups).keys().copied().collect();
            ids.sort_unstable();
            let list: Vec<String> = ids.iter().map(u32::to_string).collect();
            return Ok(AdminResponse {
                index: 0,
                message: list.join(","),
            });
        }
        proto::CMD_ADMIN_ADD_GROUP => {
            if read(&shared.groups).contains_key(&a.group_id) {
                return Err((
                    Status::CLIENT_ERROR,
                    format!("group {} already exists on this node", a.group_id),
                ));
            }
            let g = GroupConfig::new(a.group_id, a.members.clone(), a.observers.clone());
            let ids: std::collections::BTreeSet<u32> =
                shared.cfg.servers.iter().map(|s| s.id).collect();
            crate::config::validate_membership(
                &format!("group {}", a.group_id),
                &g.members,
                &g.observers,
                &ids,
            )
            .map_err(|e| (Status::CLIENT_ERROR, e.to_string()))?;
            if !g.members.contains(&shared.node_id) && !g.observers.contains(&shared.node_id) {
                return Err((
                    Status::CLIENT_ERROR,
                    format!(
                        "node {} is neither member nor observer of group {}",
                        shared.node_id, a.group_id
                    ),
                ));
            }
            let h = open_group(shared, &g)
                .await
                .map_err(|e| (Status::SYS_ERROR, e))?;
            write(&shared.groups).insert(a.group_id, h);
            return Ok(AdminResponse {
                index: 0,
                message: format!("group {} started on node {}", a.group_id, shared.node_id),
            });
        }
        proto::CMD_ADMIN_REMOVE_GROUP => {
            let h = write(&shared.groups)
                .remove(&a.group_id)
                .ok_or_else(|| not_found(a.group_id))?;
            let (reply, rx) = oneshot::channel();
            let _ =
                h.tx.send(GroupMsg::Stop {
                    grace: Duration::from_secs(5),
                    delete: true,
                    reply,
                })
                .await;
            let _ = rx.await;
            return Ok(AdminResponse {
                index: 0,
                message: format!(
                    "group {} removed from node {} and its data deleted",
                    a.group_id, shared.node_id
                ),
            });
        }
        proto::CMD_ADMIN_TRANSFER_LEADER => AdminOp::TransferLeader {
            target: a.node_id,
            timeout_ms: if a.timeout_ms == 0 {
                shared.cfg.elect_timeout_ms
            } else {
                a.timeout_ms
            },
        },
        proto::CMD_ADMIN_PREPARE => AdminOp::Prepare {
            members: a.members.clone(),
            observers: a.observers.clone(),
        },
        proto::CMD_ADMIN_COMMIT => AdminOp::Commit {
            prepare_index: a.prepare_index,
        },
        proto::CMD_ADMIN_ABORT => AdminOp::Abort,
        proto::CMD_ADMIN_SNAPSHOT => AdminOp::Snapshot,
        _ => {
            return Err((
                Status::COMMAND_NOT_SUPPORTED,
                format!("unknown admin command {cmd}"),
            ));
        }
    };
    let tx = shared
        .group_tx(a.group_id)
        .ok_or_else(|| not_found(a.group_id))?;
    let (reply, rx) = oneshot::channel();
    tx.send(GroupMsg::Admin { op, reply })
        .await
        .map_err(|_| (Status::RAFT_GROUP_STOPPED, "group stopped".to_string()))?;
    rx.await
        .map_err(|_| (Status::RAFT_GROUP_STOPPED, "group stopped".to_string()))?
}
