//! Links to the peers of the servers list: one sender task per peer that
//! checks the peer's configuration ("raft ping") on every new connection
//! before raft frames go on it, and the replicate-port side of the same
//! links (answering config checks, taking raft frames from checked
//! connections only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_net::command::CMD_PING;
use dongting_net::{Request, Responder, Status};
use dongting_raft::NodeId;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::inbox::GroupMsg;
use crate::metrics_kv::PEER_RTT_PROBE_INTERVAL;
use crate::ping::{PingInfo, differences};
use crate::shared::{NodeShared, Peer, lock, read};
use dongting_proto::service as proto;

/// Pause between config checks of a peer that is down or refused.
const PING_RETRY: Duration = Duration::from_millis(500);

/// Sends queued raft frames to one peer, checking its configuration first on
/// every new connection. Stops when the peer leaves the servers list, and
/// closes the connection to it.
pub(super) async fn peer_task(
    shared: Arc<NodeShared>,
    peer: Arc<Peer>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let id = peer.id;
    let mut addr: Option<SocketAddr> = None;
    // The connection that passed the config check. Raft frames go on it and
    // on no other: the peer closes a connection that sends raft frames before
    // the check, and a frame that opened a fresh connection by itself would
    // make every later batch race that close.
    let mut checked: Option<u64> = None;
    let mut next_ping = Instant::now();
    let mut next_probe = Instant::now();
    let mut probe: Option<tokio::task::JoinHandle<()>> = None;
    let mut batch = Vec::new();
    loop {
        // Without traffic, keep checking the link so status shows whether
        // the peer is reachable and agrees with our configuration.
        let first = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(1), rx.recv()) => match r {
                Ok(Some(b)) => Some(b),
                Ok(None) => break,
                Err(_) => None,
            },
            () = peer.wake.notified() => None,
        };
        if peer.removed.load(Ordering::Relaxed) {
            break;
        }
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
                let checked_conn = match ping_peer(&shared, &peer, a).await {
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
        let mut sent_bytes = 0;
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
            sent_bytes += b.len() as u64;
        }
        if sent_bytes > 0 {
            peer.metrics
                .sent_bytes
                .fetch_add(sent_bytes, Ordering::Relaxed);
        }
        // One probe at a time, off this task so raft frames never wait for it.
        if checked.is_some()
            && probe.as_ref().is_none_or(|p| p.is_finished())
            && Instant::now() >= next_probe
        {
            next_probe = Instant::now() + PEER_RTT_PROBE_INTERVAL;
            probe = Some(tokio::spawn(probe_rtt(shared.clone(), id, a, conn)));
        }
    }
    if peer.removed.load(Ordering::Relaxed) {
        if let Some(a) = addr {
            super::servers::close_removed(&shared, a).await;
        }
        info!(
            peer = id,
            "link to a node removed from the servers list closed"
        );
    }
}

/// Times one ping on the checked connection `conn` to peer `id` and records
/// the round trip; a ping that failed or went on another connection (the
/// checked one closed meanwhile) is not a sample of the link.
async fn probe_rtt(shared: Arc<NodeShared>, id: u32, addr: SocketAddr, conn: u64) {
    let Some(peer) = read(&shared.peers).get(&id).cloned() else {
        return;
    };
    if shared.client.connection_id(addr) != Some(conn) {
        return;
    }
    let timeout = Duration::from_millis(shared.cfg.rpc_timeout_ms.min(5000));
    let sent = Instant::now();
    let r = shared.client.call(addr, CMD_PING, &[], timeout).await;
    let rtt = sent.elapsed();
    match r {
        Ok(_) if shared.client.connection_id(addr) == Some(conn) => peer.metrics.rtt.observe(rtt),
        Ok(_) => {}
        Err(e) => debug!(peer = id, error = %e, "round-trip ping failed"),
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

/// Answers a peer's config check; a connection that passes may carry raft
/// frames from then on.
pub(super) fn handle_ping(shared: &Arc<NodeShared>, req: Request, resp: Responder) {
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
        .insert(conn.id(), (remote.node_id, conn.clone()))
        .is_none()
    {
        // Forget the connection once it closes.
        let s = shared.clone();
        tokio::spawn(async move {
            conn.closed().await;
            lock(&s.checked_conns).remove(&conn.id());
        });
    }
    if let Some(p) = read(&shared.peers).get(&remote.node_id) {
        lock(&p.status).service_port = remote.service_port;
    }
    resp.ok(&local.encode());
}

/// Routes a frame of raft messages from a checked connection to its group.
pub(super) fn handle_raft(shared: &NodeShared, req: Request, resp: Responder) {
    drop(resp);
    let from = lock(&shared.checked_conns)
        .get(&req.conn().id())
        .map(|(node, _)| *node);
    let Some(from) = from else {
        // A link that skipped the config check: make the sender reconnect and check.
        info!(
            conn = req.conn().id(),
            "raft frame on an unchecked connection; closing it"
        );
        req.conn().close();
        return;
    };
    if let Some(p) = read(&shared.peers).get(&from) {
        p.metrics
            .received_bytes
            .fetch_add(req.body().len() as u64, Ordering::Relaxed);
    }
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

/// The first socket address `addr` (`host:port`) resolves to.
pub(super) async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}
