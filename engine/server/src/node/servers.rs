//! The servers list in force and its changes at runtime (`admin add-node`,
//! `admin remove-node`).
//!
//! The list starts as the configuration file's `servers`. A change is checked,
//! written to `servers.toml` in the data directory (a temporary file, fsync,
//! rename, fsync of the directory), then put in force: a new peer gets its
//! sender task, a removed one's task stops and its connections close. At start
//! a `servers.toml` found there overrides the file's list, so a node restarted
//! after a change comes back with the list it had.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dongting_net::Status;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::info;

use super::peers::peer_task;
use crate::config::{NodeConfig, ServerEntry};
use crate::shared::{NodeShared, Peer, lock, read, write};
use dongting_proto::service::AdminResponse;
use dongting_proto::status::PeerStatus;

/// Name of the file, in the data directory, that holds the list in force.
pub(crate) const SERVERS_FILE: &str = "servers.toml";

/// Raft frames queued for one peer; more are dropped (raft resends).
const PEER_QUEUE: usize = 8_192;

/// How long calls in flight to a removed peer may take before its connection closes.
const REMOVED_PEER_GRACE: Duration = Duration::from_millis(200);

/// The content of [`SERVERS_FILE`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServersFile {
    servers: Vec<ServerEntry>,
}

type AdminResult = Result<AdminResponse, (Status, String)>;

/// Reads the list persisted in `data_dir`, if any. An unreadable or
/// malformed file is an error naming it: the node must not start with a list
/// it did not choose.
pub(crate) fn load(data_dir: &Path) -> Result<Option<Vec<ServerEntry>>, String> {
    let path = data_dir.join(SERVERS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let f: ServersFile =
        toml::from_str(&text).map_err(|e| format!("{} is malformed: {e}", path.display()))?;
    Ok(Some(f.servers))
}

/// Writes `servers` to `data_dir` atomically: a reader (or a restart after a
/// crash) sees the old list or the new one, never a mix. Blocking IO.
fn save(data_dir: &Path, servers: &[ServerEntry]) -> Result<(), String> {
    use std::io::Write;
    let text = toml::to_string(&ServersFile {
        servers: servers.to_vec(),
    })
    .map_err(|e| e.to_string())?;
    let path = data_dir.join(SERVERS_FILE);
    let tmp: PathBuf = data_dir.join(format!("{SERVERS_FILE}.tmp"));
    let io =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(
        b"# The servers list in force on this node, written by `dongting admin add-node`\n\
          # and `remove-node`. It overrides `servers` of the configuration file at start.\n",
    )
    .and_then(|()| f.write_all(text.as_bytes()))
    .and_then(|()| f.sync_all())
    .map_err(|e| io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| io("rename to", &path, e))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", data_dir, e))
}

/// Checks a servers list as the node would use it: ids and addresses well
/// formed and unique, this node listed, no port clash with this node's own.
/// Group seeds of the file are not checked against it: a group with state on
/// disk has its own membership.
pub(crate) fn check(cfg: &NodeConfig, servers: &[ServerEntry]) -> Result<(), String> {
    let mut c = cfg.clone();
    c.servers = servers.to_vec();
    c.groups.clear();
    c.dial
        .retain(|k, _| servers.iter().any(|s| s.id.to_string() == *k));
    c.validate().map_err(|e| e.to_string())
}

/// A peer for `entry` and the receiving end of its frame queue.
pub(super) fn new_peer(
    cfg: &NodeConfig,
    entry: &ServerEntry,
) -> (Arc<Peer>, mpsc::Receiver<bytes::Bytes>) {
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    let dial = cfg
        .dial
        .get(&entry.id.to_string())
        .unwrap_or(&entry.address)
        .clone();
    let peer = Arc::new(Peer {
        id: entry.id,
        address: entry.address.clone(),
        dial,
        tx,
        status: Mutex::new(PeerStatus {
            node_id: entry.id,
            address: entry.address.clone(),
            ..PeerStatus::default()
        }),
        removed: std::sync::atomic::AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
        metrics: crate::metrics_kv::PeerMetrics::new(),
    });
    (peer, rx)
}

/// Persists `servers` and puts it in force.
async fn put_in_force(
    shared: &NodeShared,
    servers: Vec<ServerEntry>,
) -> Result<(), (Status, String)> {
    let dir = shared.cfg.data_dir.clone();
    let list = servers.clone();
    tokio::task::spawn_blocking(move || save(&dir, &list))
        .await
        .map_err(|e| (Status::SYS_ERROR, e.to_string()))?
        .map_err(|e| (Status::SYS_ERROR, e))?;
    *write(&shared.servers) = Arc::new(servers);
    Ok(())
}

/// `admin add-node`: adds node `id` at `address` to the servers list in force.
pub(super) async fn add_node(shared: &Arc<NodeShared>, id: u32, address: &str) -> AdminResult {
    let me = shared.node_id;
    let refuse = |m: String| Err((Status::CLIENT_ERROR, m));
    if id == 0 {
        return refuse("add-node needs a node id greater than 0".into());
    }
    let _change = shared.servers_change.lock().await;
    let list = shared.servers();
    if let Some(s) = list.iter().find(|s| s.id == id) {
        if s.address == address {
            return Ok(AdminResponse {
                index: 0,
                message: format!(
                    "node {id} at {address} is already in the servers list of node {me}; nothing changed"
                ),
            });
        }
        return refuse(format!(
            "node {id} is already in the servers list of node {me} at {}, not {address}; \
             remove it first to change its address",
            s.address
        ));
    }
    let entry = ServerEntry {
        id,
        address: address.to_string(),
    };
    let mut servers = list.to_vec();
    servers.push(entry.clone());
    servers.sort_by_key(|s| s.id);
    check(&shared.cfg, &servers)
        .map_err(|e| (Status::CLIENT_ERROR, format!("cannot add node {id}: {e}")))?;
    put_in_force(shared, servers).await?;
    let (peer, rx) = new_peer(&shared.cfg, &entry);
    write(&shared.peers).insert(id, peer.clone());
    tokio::spawn(peer_task(shared.clone(), peer, rx));
    info!(peer = id, address, "node added to the servers list");
    Ok(AdminResponse {
        index: 0,
        message: format!("node {id} at {address} added to the servers list of node {me}"),
    })
}

/// `admin remove-node`: removes node `id` from the servers list in force,
/// unless a group hosted here still counts it as a member or observer.
pub(super) async fn remove_node(shared: &Arc<NodeShared>, id: u32) -> AdminResult {
    let me = shared.node_id;
    if id == me {
        return Err((
            Status::CLIENT_ERROR,
            format!("node {me} cannot remove itself from its own servers list"),
        ));
    }
    let _change = shared.servers_change.lock().await;
    let list = shared.servers();
    if !list.iter().any(|s| s.id == id) {
        return Ok(AdminResponse {
            index: 0,
            message: format!("node {id} is not in the servers list of node {me}; nothing changed"),
        });
    }
    let status = shared.current_status(None).await;
    for g in &status.groups {
        let joint = g
            .joint
            .as_ref()
            .is_some_and(|j| j.members.contains(&id) || j.observers.contains(&id));
        if g.members.contains(&id) || g.observers.contains(&id) || joint {
            return Err((
                Status::CLIENT_ERROR,
                format!(
                    "node {id} is still in the membership of group {} on node {me} \
                     (members {:?}, observers {:?}{}); change the group's membership first \
                     (admin prepare, then commit)",
                    g.group_id,
                    g.members,
                    g.observers,
                    if joint {
                        ", and in its pending change"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    let servers: Vec<ServerEntry> = list.iter().filter(|s| s.id != id).cloned().collect();
    put_in_force(shared, servers).await?;
    if let Some(peer) = write(&shared.peers).remove(&id) {
        peer.removed.store(true, Ordering::Relaxed);
        // A stored permit: the task sees it even if it is not waiting yet.
        peer.wake.notify_one();
    }
    // Links the removed node opened to us: close them.
    let conns: Vec<_> = lock(&shared.checked_conns)
        .values()
        .filter(|(node, _)| *node == id)
        .map(|(_, c)| c.clone())
        .collect();
    for c in conns {
        c.close();
    }
    info!(peer = id, "node removed from the servers list");
    Ok(AdminResponse {
        index: 0,
        message: format!("node {id} removed from the servers list of node {me}"),
    })
}

/// Closes the client side of the link to a removed peer once its task stopped.
pub(super) async fn close_removed(shared: &NodeShared, addr: std::net::SocketAddr) {
    shared.client.disconnect(addr, REMOVED_PEER_GRACE).await;
}

/// Ids of the servers list in force, for checks of group membership.
pub(super) fn ids(shared: &NodeShared) -> std::collections::BTreeSet<u32> {
    read(&shared.servers).iter().map(|s| s.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> NodeConfig {
        let text = format!(
            "node_id = 1\ndata_dir = \"{}\"\nservice_port = 5001\nservers = [\n\
             {{ id = 1, address = \"127.0.0.1:4001\" }},\n\
             {{ id = 2, address = \"127.0.0.1:4002\" }},\n]\n",
            dir.display()
        );
        NodeConfig::from_toml_str(&text, &[]).expect("config")
    }

    fn entry(id: u32, port: u16) -> ServerEntry {
        ServerEntry {
            id,
            address: format!("127.0.0.1:{port}"),
        }
    }

    #[test]
    fn the_list_round_trips_through_the_data_directory() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(d.path()).expect("load"), None);
        let list = vec![entry(1, 4001), entry(2, 4002), entry(4, 4004)];
        save(d.path(), &list).expect("save");
        assert_eq!(load(d.path()).expect("load"), Some(list.clone()));
        assert!(!d.path().join(format!("{SERVERS_FILE}.tmp")).exists());
        save(d.path(), &list[..2]).expect("save");
        assert_eq!(load(d.path()).expect("load"), Some(list[..2].to_vec()));
        std::fs::write(d.path().join(SERVERS_FILE), "servers = [ { id = 1 } ]").expect("write");
        let e = load(d.path()).expect_err("malformed");
        assert!(e.contains(SERVERS_FILE), "{e}");
    }

    #[test]
    fn a_list_without_this_node_or_with_a_clash_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let c = cfg(d.path());
        check(&c, &[entry(1, 4001), entry(3, 4003)]).expect("valid");
        let e = check(&c, &[entry(2, 4002), entry(3, 4003)]).expect_err("no node 1");
        assert!(e.contains("node id 1 is not in servers"), "{e}");
        let e = check(&c, &[entry(1, 4001), entry(3, 4001)]).expect_err("clash");
        assert!(e.contains("duplicate port"), "{e}");
    }
}
