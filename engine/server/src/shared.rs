//! The state of a node that its handlers, peer tasks and group tasks share:
//! the map of hosted groups (their inboxes and published status), the servers
//! list in force and its peers, and the node's RPC client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dongting_net::RpcClient;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::config::{NodeConfig, ServerEntry};
use crate::inbox::GroupMsg;
use crate::metrics_kv::{KvMetrics, PeerMetrics};
use crate::ping::{PingGroup, PingInfo};
use dongting_proto::status::{GroupStatus, NodeStatus, PeerStatus};

/// How long a status request waits for the groups to publish their state.
const STATUS_REFRESH_WAIT: Duration = Duration::from_millis(500);

/// A running group as the node sees it.
pub(crate) struct GroupHandle {
    pub(crate) tx: mpsc::Sender<GroupMsg>,
    pub(crate) status: watch::Receiver<GroupStatus>,
    /// Durations of the group log's fsyncs, for metrics.
    pub(crate) fsync: Arc<dongting_store::FsyncStats>,
    /// Counters and gauges the group task keeps for metrics.
    pub(crate) metrics: Arc<crate::group::GroupMetrics>,
}

/// One peer of the servers list.
pub(crate) struct Peer {
    pub(crate) id: u32,
    pub(crate) address: String,
    /// Where this node connects to reach the peer: `address` unless `[dial]`
    /// overrides it.
    pub(crate) dial: String,
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) status: Mutex<PeerStatus>,
    /// Bytes sent and received, round-trip times.
    pub(crate) metrics: PeerMetrics,
    /// Set when the peer leaves the servers list; its task then stops.
    pub(crate) removed: AtomicBool,
    /// Wakes the peer's task when `removed` is set.
    pub(crate) wake: tokio::sync::Notify,
}

/// State shared by the handlers, the peer tasks and the group tasks.
pub(crate) struct NodeShared {
    pub(crate) node_id: u32,
    /// The configuration the node started with; its `servers` is the list
    /// in force at start, later changes are in `servers`.
    pub(crate) cfg: NodeConfig,
    pub(crate) groups: RwLock<HashMap<u32, GroupHandle>>,
    /// The servers list in force (this node included), sorted by id; replaced
    /// whole by add-node and remove-node.
    pub(crate) servers: RwLock<Arc<Vec<ServerEntry>>>,
    /// Every other server of `servers`: read (never across an await) for each
    /// raft frame, written only by add-node and remove-node.
    pub(crate) peers: RwLock<HashMap<u32, Arc<Peer>>>,
    /// Held by add-node and remove-node from check to persisted file, so two
    /// changes never interleave.
    pub(crate) servers_change: tokio::sync::Mutex<()>,
    pub(crate) service_ports: Mutex<HashMap<u32, u16>>,
    /// Connection ids of peers that passed the config check, with their node id.
    pub(crate) checked_conns: Mutex<HashMap<u64, (u32, dongting_net::ConnHandle)>>,
    pub(crate) stopping: AtomicBool,
    pub(crate) start_ms: u64,
    pub(crate) service_port: u16,
    pub(crate) client: RpcClient,
    /// File layer of every group's log (the OS unless a test injects faults).
    pub(crate) fs: Option<Arc<dyn dongting_store::fs::FileSystem>>,
    /// Answers of DtKV requests by operation and code, and their durations.
    pub(crate) kv_metrics: Arc<KvMetrics>,
}

impl NodeShared {
    /// `host:replicatePort` of node `id`, from the servers list in force.
    pub(crate) fn server_address(&self, id: u32) -> Option<String> {
        read(&self.servers)
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.address.clone())
    }

    /// The servers list in force. Cheap: one reference count.
    pub(crate) fn servers(&self) -> Arc<Vec<ServerEntry>> {
        read(&self.servers).clone()
    }

    /// Service endpoint (host, port) of node `id`, when its port is known.
    pub(crate) fn service_endpoint(&self, id: u32) -> Option<(String, u16)> {
        let addr = self.server_address(id)?;
        let (host, _) = crate::config::parse_address(&addr).ok()?;
        let port = if id == self.node_id {
            self.service_port
        } else {
            *lock(&self.service_ports).get(&id)?
        };
        Some((host, port))
    }

    /// Queues a raft frame for a peer; drops it when the peer's queue is full.
    pub(crate) fn send_to_peer(&self, id: u32, body: Bytes) {
        match read(&self.peers).get(&id) {
            Some(p) => {
                if p.tx.try_send(body).is_err() {
                    debug!(peer = id, "peer queue full, raft frame dropped");
                }
            }
            None => debug!(peer = id, "raft message to a node not in servers dropped"),
        }
    }

    pub(crate) fn ping_info(&self, target: u32) -> PingInfo {
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
                .servers()
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

    /// Each hosted group's metrics handle, by group id.
    pub(crate) fn group_metrics(&self) -> Vec<(u32, Arc<crate::group::GroupMetrics>)> {
        let mut v: Vec<_> = read(&self.groups)
            .iter()
            .map(|(id, g)| (*id, g.metrics.clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    pub(crate) fn node_status(&self, group: Option<u32>) -> NodeStatus {
        let groups = read(&self.groups);
        let mut gs: Vec<GroupStatus> = groups
            .iter()
            .filter(|(id, _)| group.is_none_or(|g| g == **id))
            .map(|(_, g)| g.status.borrow().clone())
            .collect();
        gs.sort_by_key(|g| g.group_id);
        let mut peers: Vec<PeerStatus> = read(&self.peers)
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

/// Locks `m`, also when a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-locks `m`, also when a thread panicked while holding it.
pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks `m`, also when a thread panicked while holding it.
pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
