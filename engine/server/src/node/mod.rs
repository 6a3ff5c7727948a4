//! The node: one process hosting many raft groups behind two ports.
//!
//! [`Node::start`] opens every configured group ([`groups`]), starts one task
//! per group and one sender task per peer ([`peers`]), and listens on the
//! replicate port (peers and admin tools) and the service port (clients),
//! whose commands [`handlers`] routes. Handlers run on connection tasks and
//! only route requests to group tasks through bounded queues; the group map
//! is read under a read lock that writers (add/remove group) hold only to
//! insert or remove an entry.

mod backup;
mod groups;
mod handlers;
mod peers;
mod servers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dongting_net::{ClientConfig, CommandSet, PortConfig, RpcClient, RpcServer, ServerConfig};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::groups::open_group;
use self::handlers::{replicate_commands, service_commands};
use self::peers::{peer_task, resolve};
use self::servers::new_peer;
use crate::clock::wall_ms;
use crate::config::{GroupConfig, NodeConfig};
use crate::inbox::GroupMsg;
use crate::metrics_kv::KvMetrics;
use crate::shared::{NodeShared, read, write};
use dongting_proto::status::NodeStatus;

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
        let cfg = with_servers_in_force(cfg)?;
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
            let (peer, rx) = new_peer(&cfg, s);
            peers.insert(s.id, peer.clone());
            peer_rx.push((peer, rx));
        }
        let mut servers = cfg.servers.clone();
        servers.sort_by_key(|s| s.id);
        let shared = Arc::new(NodeShared {
            node_id: cfg.node_id,
            groups: RwLock::new(HashMap::new()),
            servers: RwLock::new(Arc::new(servers)),
            peers: RwLock::new(peers),
            servers_change: tokio::sync::Mutex::new(()),
            service_ports: Mutex::new(HashMap::new()),
            checked_conns: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            start_ms: wall_ms(),
            service_port: sport,
            client,
            fs,
            kv_metrics: Arc::new(KvMetrics::new()),
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
        for (peer, rx) in peer_rx {
            tokio::spawn(peer_task(shared.clone(), peer, rx));
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
                    Duration::from_millis(cfg.http_request_timeout_ms),
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
            &self.shared.group_metrics(),
            &self.shared,
        )
    }

    /// This node's status and every group's.
    pub fn status(&self) -> NodeStatus {
        self.shared.node_status(None)
    }

    /// Graceful shutdown: every group this node leads hands leadership to
    /// its most up-to-date voter (up to `shutdown_transfer_timeout_ms`; the
    /// requests it refuses meanwhile are told the new leader), every group
    /// finishes the writes it accepted (up to `grace`), saves a snapshot
    /// where configured, syncs and closes its log; then the node refuses
    /// requests and closes the ports. Groups stop side by side.
    pub async fn shutdown(&self, grace: Duration) {
        // The ports and the peer links stay up while the groups stop: a
        // hand-over needs raft messages both ways, and clients need answers
        // that name the new leader.
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
        let transfer = self.shared.cfg.shutdown_transfer_timeout();
        for (id, rx) in waits {
            if tokio::time::timeout(grace + transfer + Duration::from_secs(30), rx)
                .await
                .is_err()
            {
                warn!(group = id, "group did not stop in time");
            }
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
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

/// `cfg` with the servers list persisted in its data directory by add-node
/// and remove-node, when there is one; logs which list is in force.
fn with_servers_in_force(mut cfg: NodeConfig) -> Result<NodeConfig, String> {
    let ids = |l: &[crate::config::ServerEntry]| -> Vec<u32> { l.iter().map(|s| s.id).collect() };
    match servers::load(&cfg.data_dir)? {
        Some(list) => {
            let path = cfg.data_dir.join(servers::SERVERS_FILE);
            servers::check(&cfg, &list)
                .map_err(|e| format!("servers list in {}: {e}", path.display()))?;
            info!(
                node = cfg.node_id,
                file = %path.display(),
                servers = ?ids(&list),
                config_file_servers = ?ids(&cfg.servers),
                "servers list in force: the one persisted in the data directory"
            );
            cfg.servers = list;
        }
        None => info!(
            node = cfg.node_id,
            servers = ?ids(&cfg.servers),
            "servers list in force: the configuration file's"
        ),
    }
    Ok(cfg)
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
