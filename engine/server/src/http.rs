//! The node's HTTP port (`http_port`): Prometheus metrics and health checks.
//!
//! - `GET /metrics`: OpenMetrics text (`prometheus-client`), built at each
//!   scrape from the groups' current status and the node's counters.
//! - `GET /livez`: 200 while the process serves.
//! - `GET /readyz`: 200 when every hosted group has a leader and has applied an
//!   entry of its term; 503 with a JSON body naming the groups that are not,
//!   and why.
//! - `GET /status`: the admin status as JSON.
//!
//! Unknown paths answer 404, other methods 405. The port serves nothing that
//! changes state; it runs on the node's runtime beside the raft ports and
//! shares no queue with them. It is HTTP/1.1 only and bounds what a client
//! can hold: the time to send a request head (`http_request_timeout_ms`), the
//! head's size ([`MAX_HTTP_HEAD_BYTES`], else 431), the body's size
//! ([`MAX_HTTP_BODY_BYTES`], else 413) and the connections open at once
//! ([`MAX_HTTP_CONNECTIONS`], more are closed on accept).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::borrow::Cow;

use dongting_store::FsyncSnapshot;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use dongting_net::{ServerStats, StatsHandle};

use crate::shared::NodeShared;
use dongting_proto::status::{GroupStatus, NodeStatus, Role};

/// Connections the HTTP port keeps open at once; more are closed on accept.
/// Scrapers and probes hold one or two each, so this is far above any honest
/// need and keeps a flood of idle sockets from holding file descriptors.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 256;

/// Largest request head (request line and headers) the HTTP port reads, in
/// bytes. A longer one is answered 431 and its connection closed once this
/// much is buffered, whatever the client still sends.
pub(crate) const MAX_HTTP_HEAD_BYTES: usize = 16 * 1024;

/// Largest request body the HTTP port accepts, in bytes. Every endpoint is a
/// GET, so a request that announces more (or a chunked body of unknown
/// length) is answered 413 without its body being read, and its connection
/// is closed.
pub(crate) const MAX_HTTP_BODY_BYTES: u64 = 1024;

/// A running HTTP port; [`HttpServer::shutdown`] stops it.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves the endpoints of `shared`'s node. A client
    /// gets `head_timeout` to send each request head (from the connection's
    /// start, or from the end of its previous answer); past it the connection
    /// is closed. Connections, heads and bodies are bounded by
    /// [`MAX_HTTP_CONNECTIONS`], [`MAX_HTTP_HEAD_BYTES`] and
    /// [`MAX_HTTP_BODY_BYTES`].
    pub(crate) async fn start(
        addr: SocketAddr,
        shared: Arc<NodeShared>,
        net: StatsHandle,
        head_timeout: Duration,
    ) -> Result<HttpServer, String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("http_port: cannot listen on {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("http_port: {e}"))?;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .route("/status", get(status))
            .with_state(Sources { shared, net });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, head_timeout, stopped));
        Ok(HttpServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets answers in progress finish for up to `grace`,
    /// then drops every connection still open.
    pub(crate) async fn shutdown(&mut self, grace: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Aborting the accept task drops its connection set, which aborts
        // the connections' tasks.
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Accepts on `listener` until `stopped` fires (or its sender is dropped),
/// serving each connection with `app` under the port's limits; then asks
/// every open connection to finish its answer in progress and close, and
/// waits for them.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    head_timeout: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(MAX_HTTP_HEAD_BYTES);
    let router = TowerToHyperService::new(app);
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let (closing, closing_seen) = watch::channel(false);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: give the
                        // process a moment instead of spinning on accept.
                        debug!(error = %e, "http port: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!(
                        max = MAX_HTTP_CONNECTIONS,
                        "http port: connection cap reached, closing a new connection"
                    );
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let conn = http.serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req: Request<Incoming>| {
                        let router = router.clone();
                        async move {
                            if body_too_large(&req) {
                                return Ok::<_, Infallible>(refuse_body());
                            }
                            router.call(req).await
                        }
                    }),
                );
                let mut closing_seen = closing_seen.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let mut conn = std::pin::pin!(conn);
                    let result = tokio::select! {
                        r = conn.as_mut() => r,
                        _ = closing_seen.changed() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = result {
                        debug!(error = %e, "http connection closed");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while conns.join_next().await.is_some() {}
}

/// Whether `req` announces a body over [`MAX_HTTP_BODY_BYTES`] or one of
/// unknown length. Reads only the head.
fn body_too_large(req: &Request<Incoming>) -> bool {
    req.body()
        .size_hint()
        .upper()
        .is_none_or(|n| n > MAX_HTTP_BODY_BYTES)
}

/// The answer to a request whose body is too large: 413, and the connection
/// closed so that the body is never read.
fn refuse_body() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        format!("request body over {MAX_HTTP_BODY_BYTES} bytes\n"),
    )
        .into_response()
}

/// What the endpoints read: the node's groups and its RPC ports' counters.
#[derive(Clone)]
struct Sources {
    shared: Arc<NodeShared>,
    net: StatsHandle,
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn status(State(src): State<Sources>) -> Response {
    let st = src.shared.current_status(None).await;
    json(StatusCode::OK, status_json(&st))
}

async fn readyz(State(src): State<Sources>) -> Response {
    let st = src.shared.current_status(None).await;
    let not_ready: Vec<serde_json::Value> = st
        .groups
        .iter()
        .filter_map(|g| {
            not_ready_reason(g).map(|why| serde_json::json!({"group": g.group_id, "why": why}))
        })
        .collect();
    if not_ready.is_empty() && !st.groups.is_empty() {
        json(
            StatusCode::OK,
            serde_json::json!({"ready": true, "groups": st.groups.len()}),
        )
    } else {
        let why = if st.groups.is_empty() {
            vec![serde_json::json!({"why": "the node hosts no group"})]
        } else {
            not_ready
        };
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "groups": why}),
        )
    }
}

/// Why group `g` is not ready on this node, or `None` when it is.
fn not_ready_reason(g: &GroupStatus) -> Option<String> {
    if g.role == Some(Role::Stopped) {
        return Some(if g.last_error.is_empty() {
            "stopped".to_string()
        } else {
            format!("stopped: {}", g.last_error)
        });
    }
    if g.leader_id == 0 {
        return Some(format!("no leader known in term {}", g.term));
    }
    if !g.ready {
        return Some(format!(
            "no entry of term {} applied here yet (applied {}, commit {})",
            g.term, g.applied_index, g.commit_index
        ));
    }
    None
}

fn json(code: StatusCode, body: serde_json::Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn status_json(st: &NodeStatus) -> serde_json::Value {
    let groups: Vec<_> = st
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "group": g.group_id,
                "role": g.role.map(Role::name),
                "term": g.term,
                "leader": g.leader_id,
                "commit": g.commit_index,
                "applied": g.applied_index,
                "last_log": g.last_log_index,
                "apply_lag": g.apply_lag,
                "members": g.members,
                "observers": g.observers,
                "joint": g.joint.as_ref().map(|j| serde_json::json!({
                    "prepare_index": j.prepare_index,
                    "members": j.members,
                    "observers": j.observers,
                })),
                "membership_index": g.membership_index,
                "snapshot": g.snapshot_index,
                "backup": g.backup_index,
                "backup_ms": g.backup_ms,
                "ready": g.ready,
                "error": g.last_error,
                "leader_service": g.leader_service,
                "leader_changes": g.leader_changes,
                "elections": g.elections,
            })
        })
        .collect();
    let peers: Vec<_> = st
        .peers
        .iter()
        .map(|p| {
            serde_json::json!({
                "node": p.node_id,
                "address": p.address,
                "connected": p.connected,
                "config_checked": p.config_checked,
                "message": p.message,
                "service_port": p.service_port,
            })
        })
        .collect();
    serde_json::json!({
        "node": st.node_id,
        "pid": st.process_id,
        "ready": st.ready,
        "service_port": st.service_port,
        "peers": peers,
        "groups": groups,
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: u32,
}

async fn metrics(State(src): State<Sources>) -> Response {
    let st = src.shared.current_status(None).await;
    let text = metrics_text(
        &st,
        &src.net.stats(),
        &src.shared.fsync_snapshots(),
        &src.shared.group_metrics(),
        &src.shared,
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A histogram read elsewhere (the log's fsyncs), encoded as one.
#[derive(Debug)]
struct FsyncHistogram(FsyncSnapshot);

impl TypedMetric for FsyncHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FsyncHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        // The encoder sums the buckets itself and writes the bound f64::MAX
        // as +Inf: hand it each bucket's own count.
        let h = &self.0;
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(le, cumulative)| {
                let own = cumulative.saturating_sub(below);
                below = cumulative;
                (le, own)
            })
            .collect();
        buckets.push((f64::MAX, h.count.saturating_sub(below)));
        encoder.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The metrics of `st`, of the node's RPC ports (`net`), of its groups' log
/// fsyncs and counters (`groups`), of its DtKV requests and peer links
/// (`shared`) and of this process in the OpenMetrics text format.
pub(crate) fn metrics_text(
    st: &NodeStatus,
    net: &ServerStats,
    fsync: &[(u32, FsyncSnapshot)],
    groups: &[(u32, Arc<crate::group::GroupMetrics>)],
    shared: &NodeShared,
) -> String {
    let mut reg = <Registry>::with_prefix("dongting");
    let gauge = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(&GroupStatus) -> i64| {
        let fam = Family::<GroupLabel, Gauge>::default();
        for g in &st.groups {
            fam.get_or_create(&GroupLabel { group: g.group_id })
                .set(f(g));
        }
        reg.register(name, help, fam);
    };
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        &mut reg,
        "group_has_leader",
        "1 when this node knows a leader of the group",
        &|g| i64::from(g.leader_id != 0),
    );
    gauge(
        &mut reg,
        "group_is_leader",
        "1 when this node leads the group",
        &|g| i64::from(g.role == Some(Role::Leader)),
    );
    gauge(
        &mut reg,
        "group_ready",
        "1 when the group serves here (a leader, an entry of its term applied)",
        &|g| i64::from(g.ready),
    );
    gauge(&mut reg, "group_term", "Current raft term", &|g| n(g.term));
    gauge(
        &mut reg,
        "group_commit_index",
        "Highest log index known committed",
        &|g| n(g.commit_index),
    );
    gauge(
        &mut reg,
        "group_applied_index",
        "Highest log index applied to the state machine",
        &|g| n(g.applied_index),
    );
    gauge(
        &mut reg,
        "group_last_log_index",
        "Last index in the local log",
        &|g| n(g.last_log_index),
    );
    gauge(
        &mut reg,
        "group_apply_lag",
        "Committed entries not yet applied here",
        &|g| n(g.apply_lag),
    );
    gauge(
        &mut reg,
        "group_snapshot_index",
        "Index of the latest local snapshot",
        &|g| n(g.snapshot_index),
    );
    gauge(
        &mut reg,
        "group_members",
        "Voting members in the configuration in force",
        &|g| i64::try_from(g.members.len()).unwrap_or(i64::MAX),
    );
    gauge(
        &mut reg,
        "group_joint",
        "1 while a membership change is prepared and not committed or aborted",
        &|g| i64::from(g.joint.is_some()),
    );
    gauge(
        &mut reg,
        "kv_keys",
        "DtKV nodes (values, directories, locks) in the group here",
        &|g| n(g.keys),
    );
    gauge(
        &mut reg,
        "kv_sessions",
        "Client sessions kept for exactly-once writes",
        &|g| n(g.sessions),
    );
    gauge(
        &mut reg,
        "kv_watches",
        "Watches registered on this node",
        &|g| n(g.watches),
    );
    let counter = |reg: &mut Registry, name: &str, help: &str, f: &dyn Fn(&GroupStatus) -> u64| {
        let fam = Family::<GroupLabel, Counter>::default();
        for g in &st.groups {
            fam.get_or_create(&GroupLabel { group: g.group_id })
                .inc_by(f(g));
        }
        reg.register(name, help, fam);
    };
    counter(
        &mut reg,
        "group_leader_changes",
        "Times this node saw the group's leader change to a new one",
        &|g| g.leader_changes,
    );
    counter(
        &mut reg,
        "group_elections",
        "Elections (vote rounds, not pre-votes) this node started",
        &|g| g.elections,
    );
    for (group, h) in fsync {
        reg.sub_registry_with_label((Cow::Borrowed("group"), Cow::Owned(group.to_string())))
            .register(
                "log_fsync_duration_seconds",
                "Durations of the group log's fsyncs",
                FsyncHistogram(h.clone()),
            );
    }
    crate::group::metrics::render(&mut reg, groups);
    let connected = Family::<PeerLabel, Gauge>::default();
    let checked = Family::<PeerLabel, Gauge>::default();
    for p in &st.peers {
        let l = PeerLabel { peer: p.node_id };
        connected.get_or_create(&l).set(i64::from(p.connected));
        checked.get_or_create(&l).set(i64::from(p.config_checked));
    }
    reg.register(
        "peer_connected",
        "1 while the link to the peer is up",
        connected,
    );
    reg.register(
        "peer_config_checked",
        "1 when the peer passed the config check; 0 while it is refused or not done",
        checked,
    );
    let plain_gauge = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let g = Gauge::<i64>::default();
        g.set(n(v));
        reg.register(name, help, g);
    };
    let plain_counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    plain_gauge(
        &mut reg,
        "connections_open",
        "Connections open on the service and replicate ports",
        net.connections_open,
    );
    plain_counter(
        &mut reg,
        "connections_accepted",
        "Connections accepted on both ports",
        net.connections_accepted,
    );
    plain_counter(
        &mut reg,
        "connections_refused",
        "Connections closed on accept because their port's connection cap was reached",
        net.connections_refused,
    );
    plain_counter(
        &mut reg,
        "connections_idle_closed",
        "Client connections closed after client_idle_timeout_ms",
        net.idle_closes,
    );
    plain_counter(
        &mut reg,
        "malformed_frames",
        "Frames refused as malformed: bad magic, version, length, type or body, unknown command, cut off, failed handshake",
        net.bad_magic
            + net.bad_version
            + net.bad_length
            + net.bad_frame_type
            + net.bad_body
            + net.unknown_command
            + net.truncated_frames
            + net.handshake_failures,
    );
    plain_counter(
        &mut reg,
        "flow_control_rejections",
        "Requests refused with FLOW_CONTROL because too many were in flight",
        net.flow_control_rejections,
    );
    plain_gauge(
        &mut reg,
        "buffered_request_bytes",
        "Bytes of incomplete large request frames held (limits.max_buffered_request_bytes)",
        net.buffered_bytes,
    );
    let process = crate::procstat::read();
    let rss = Gauge::<i64>::default();
    rss.set(n(process.resident_bytes));
    reg.register(
        "process_resident_memory_bytes",
        "Resident memory of the node's process",
        rss,
    );
    let fds = Gauge::<i64>::default();
    fds.set(n(process.open_files));
    reg.register(
        "process_open_fds",
        "Open file descriptors of the node's process",
        fds,
    );
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.inc_by(process.cpu_seconds);
    reg.register(
        "process_cpu_seconds",
        "CPU time of the node's process (user and system)",
        cpu,
    );
    crate::metrics_kv::register(&mut reg, shared);
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        warn!(error = %e, "cannot encode metrics");
    }
    out
}
