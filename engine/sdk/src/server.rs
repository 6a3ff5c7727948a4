//! [`EmbeddedServer`]: a Dongting node running inside the caller's process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dongting_proto::status::Role;
#[cfg(feature = "server")]
use dongting_server::Node;
#[cfg(feature = "server")]
use dongting_server::config::NodeConfig;
#[cfg(feature = "server")]
use dongting_server::loopback::{LoopbackSpec, loopback_configs};

use crate::error::{Error, code};
use crate::op::OpFuture;
use crate::reply::Reply;
use crate::runtime::Runtime;

/// A client-only build (without the `server` feature) links no node: no
/// [`EmbeddedServer`] can exist, and starting one fails with
/// [`code::SERVER_START_FAILED`].
#[cfg(not(feature = "server"))]
enum Node {}

#[cfg(not(feature = "server"))]
impl Node {
    fn service_addr(&self) -> Option<std::net::SocketAddr> {
        match *self {}
    }
    fn replicate_addr(&self) -> Option<std::net::SocketAddr> {
        match *self {}
    }
    fn status(&self) -> dongting_proto::status::NodeStatus {
        match *self {}
    }
    fn metrics_text(&self) -> String {
        match *self {}
    }
    async fn shutdown(&self, _grace: Duration) {
        match *self {}
    }
}

#[cfg(not(feature = "server"))]
const NO_SERVER: &str = "this build of the Dongting library is client-only: it has no embedded \
                         server (use a build with the `server` feature)";

pub(crate) struct ServerInner {
    node: Node,
    node_id: u32,
    stopped: AtomicBool,
}

impl ServerInner {
    /// Stops the node once; later calls return at once.
    pub(crate) async fn stop_inner(&self, grace: Duration) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.node.shutdown(grace).await;
        }
    }
}

/// One raft group as an embedded server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group id.
    pub group_id: u32,
    /// `leader`, `follower`, `candidate`, `observer`, `stopped` or `unknown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader's node id, 0 when unknown.
    pub leader_id: u32,
    /// Highest committed index known.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
    /// A leader is known and its term's first entry is applied here.
    pub ready: bool,
}

/// An embedded server's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// This node's id.
    pub node_id: u32,
    /// Every peer passed the configuration check.
    pub ready: bool,
    /// The groups it hosts, by id.
    pub groups: Vec<GroupInfo>,
}

/// A node of a Dongting cluster running on a [`Runtime`] of this process.
///
/// Cloning is cheap; clones control the same node. Dropping every clone does
/// not stop it: call [`EmbeddedServer::stop`] (or shut the runtime down).
#[derive(Clone)]
pub struct EmbeddedServer {
    inner: Arc<ServerInner>,
    rt: Runtime,
}

impl std::fmt::Debug for EmbeddedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedServer")
            .field("node_id", &self.inner.node_id)
            .finish()
    }
}

#[cfg(feature = "server")]
fn config_error(e: impl std::fmt::Display) -> Error {
    Error::new(code::CONFIG_ERROR, e.to_string())
}

impl EmbeddedServer {
    /// Starts a node from TOML configuration text (see docs/server.md): opens
    /// and recovers every group, then listens. A relative `data_dir` is taken
    /// relative to the current directory. The future's reply holds the server
    /// ([`Reply::server`]).
    pub fn start_async(rt: &Runtime, toml: &str) -> OpFuture {
        #[cfg(not(feature = "server"))]
        {
            let _ = (rt, toml);
            OpFuture::ready(Err(Error::new(code::SERVER_START_FAILED, NO_SERVER)))
        }
        #[cfg(feature = "server")]
        match NodeConfig::from_toml_str(toml, &[]) {
            Ok(cfg) => Self::start_cfg(rt, cfg),
            Err(e) => OpFuture::ready(Err(config_error(e))),
        }
    }

    /// Like [`EmbeddedServer::start_async`] with the configuration in a file;
    /// a relative `data_dir` is taken relative to the file's directory.
    pub fn start_file_async(rt: &Runtime, path: &str) -> OpFuture {
        #[cfg(not(feature = "server"))]
        {
            let _ = (rt, path);
            OpFuture::ready(Err(Error::new(code::SERVER_START_FAILED, NO_SERVER)))
        }
        #[cfg(feature = "server")]
        match NodeConfig::load(std::path::Path::new(path), &[]) {
            Ok(cfg) => Self::start_cfg(rt, cfg),
            Err(e) => OpFuture::ready(Err(config_error(e))),
        }
    }

    /// Blocking [`EmbeddedServer::start_async`].
    pub fn start(rt: &Runtime, toml: &str) -> Result<EmbeddedServer, Error> {
        take_server(Self::start_async(rt, toml).wait_result())
    }

    /// Blocking [`EmbeddedServer::start_file_async`].
    pub fn start_file(rt: &Runtime, path: &str) -> Result<EmbeddedServer, Error> {
        take_server(Self::start_file_async(rt, path).wait_result())
    }

    #[cfg(feature = "server")]
    fn start_cfg(rt: &Runtime, cfg: NodeConfig) -> OpFuture {
        let rt2 = rt.clone();
        rt.spawn_op(async move {
            let node_id = cfg.node_id;
            let node = Node::start(cfg)
                .await
                .map_err(|e| Error::new(code::SERVER_START_FAILED, e))?;
            let inner = Arc::new(ServerInner {
                node,
                node_id,
                stopped: AtomicBool::new(false),
            });
            rt2.register_server(&inner);
            Ok(Reply {
                kind: crate::reply::ReplyKind::Server,
                server: Some(EmbeddedServer { inner, rt: rt2 }),
                ..Reply::default()
            })
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u32 {
        self.inner.node_id
    }

    /// `ip:port` clients connect to (empty once stopped).
    pub fn service_addr(&self) -> String {
        self.inner
            .node
            .service_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// `ip:port` of the replicate port (peers and admin tools).
    pub fn replicate_addr(&self) -> String {
        self.inner
            .node
            .replicate_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Whether [`EmbeddedServer::stop`] ran (or the runtime stopped it).
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// The node's status and each group's. Cheap: copies in-memory status.
    pub fn status(&self) -> Result<ServerStatus, Error> {
        self.rt.check()?;
        let st = self.inner.node.status();
        Ok(ServerStatus {
            node_id: st.node_id,
            ready: st.ready,
            groups: st
                .groups
                .iter()
                .map(|g| GroupInfo {
                    group_id: g.group_id,
                    role: match g.role {
                        Some(Role::Leader) => "leader",
                        Some(Role::Follower) => "follower",
                        Some(Role::Candidate) => "candidate",
                        Some(Role::Observer) => "observer",
                        Some(Role::Stopped) => "stopped",
                        None => "unknown",
                    }
                    .to_string(),
                    term: g.term,
                    leader_id: g.leader_id,
                    commit_index: g.commit_index,
                    applied_index: g.applied_index,
                    ready: g.ready,
                })
                .collect(),
        })
    }

    /// The node's metrics in the Prometheus/OpenMetrics text format, the same
    /// text its HTTP port's `GET /metrics` serves (docs/monitoring.md), for an
    /// application that exposes them on its own endpoint. Cheap, never blocks.
    pub fn metrics(&self) -> Result<String, Error> {
        self.rt.check()?;
        Ok(self.inner.node.metrics_text())
    }

    /// Stops the node gracefully: refuses new requests, lets each group
    /// finish accepted writes (up to `grace`), syncs and closes its logs and
    /// ports. Idempotent: later calls complete at once.
    pub fn stop_async(&self, grace: Duration) -> OpFuture {
        let inner = self.inner.clone();
        self.rt.spawn_op(async move {
            inner.stop_inner(grace).await;
            Ok(Reply::default())
        })
    }

    /// Blocking [`EmbeddedServer::stop_async`].
    pub fn stop(&self, grace: Duration) -> Result<(), Error> {
        if self.is_stopped() {
            return Ok(());
        }
        self.stop_async(grace).wait_result().map(|_| ())
    }
}

fn take_server(r: Result<Reply, Error>) -> Result<EmbeddedServer, Error> {
    r?.server
        .ok_or_else(|| Error::new(code::WRONG_RESULT_KIND, "the reply does not hold a server"))
}

/// TOML configurations for a cluster of `nodes` nodes on loopback, each
/// hosting every group of `groups`, with data under `data_dir/node<id>`.
/// Ports are picked free at call time. Elections are fast (`elect_timeout_ms`
/// 1000, heartbeat 100 ms): meant for tests and development.
pub fn local_cluster_configs(
    nodes: u32,
    groups: &[u32],
    data_dir: &str,
) -> Result<Vec<String>, Error> {
    if nodes == 0 || nodes > 9 {
        return Err(Error::invalid_argument(crate::args::out_of_range(
            "nodes",
            1,
            9,
            u64::from(nodes),
        )));
    }
    if groups.is_empty() {
        return Err(Error::invalid_argument("at least one group is needed"));
    }
    #[cfg(not(feature = "server"))]
    {
        let _ = data_dir;
        Err(Error::new(code::SERVER_START_FAILED, NO_SERVER))
    }
    #[cfg(feature = "server")]
    local_configs(nodes, groups, data_dir)
}

#[cfg(feature = "server")]
fn local_configs(nodes: u32, groups: &[u32], data_dir: &str) -> Result<Vec<String>, Error> {
    let configs = loopback_configs(&LoopbackSpec {
        nodes,
        groups: groups.to_vec(),
        data_dir: std::path::PathBuf::from(data_dir),
        elect_timeout_ms: 1000,
        heartbeat_interval_ms: 100,
        sync_force: true,
    })
    .map_err(|e| Error::new(code::RESOURCE, format!("cannot find free ports: {e}")))?;
    Ok(configs.into_iter().map(|n| n.toml).collect())
}

#[cfg(all(test, not(feature = "server")))]
mod client_only_tests {
    use super::*;

    #[test]
    fn a_client_only_build_refuses_to_start_a_server_and_says_why() {
        let rt = Runtime::new(1).expect("runtime");
        let e = EmbeddedServer::start(&rt, "node_id = 1").expect_err("client-only");
        assert_eq!(e.code(), code::SERVER_START_FAILED);
        assert!(e.message().contains("client-only"), "{}", e.message());
        let e = local_cluster_configs(1, &[0], "/tmp/unused").expect_err("client-only");
        assert_eq!(e.code(), code::SERVER_START_FAILED);
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
    }
}
