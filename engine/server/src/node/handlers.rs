//! The commands of the two ports: what each request asks for, routed to the
//! group task that serves it, and the admin commands that add or remove groups.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dongting_net::{CommandSet, Request, Responder, Status};
use tokio::sync::{mpsc, oneshot};

use super::backup::{BackupReaders, handle_backup_read};
use super::groups::open_group;
use super::peers::{handle_ping, handle_raft};
use crate::config::GroupConfig;
use crate::inbox::{AdminOp, GroupMsg};
use crate::metrics_kv::{Arrival, KvOp, KvResponder};
use crate::shared::{NodeShared, read, write};
use dongting_proto::service::{self as proto, AdminRequest, AdminResponse};
use dongting_proto::watch::{CMD_KV_UNWATCH, CMD_KV_WATCH, WatchRequest, decode_unwatch};

/// The replicate port's commands: peer links (config check, raft frames),
/// status and the admin commands.
pub(super) fn replicate_commands(shared: &Arc<NodeShared>) -> CommandSet {
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
        proto::CMD_ADMIN_ADD_NODE,
        proto::CMD_ADMIN_REMOVE_NODE,
    ] {
        let s = shared.clone();
        c.register(cmd, move |req: Request, resp: Responder| {
            handle_admin(&s, req, resp)
        });
    }
    let s = shared.clone();
    let readers = Arc::new(BackupReaders::default());
    c.register(
        proto::CMD_ADMIN_BACKUP_READ,
        move |req: Request, resp: Responder| handle_backup_read(&s, &readers, req, resp),
    );
    c
}

/// The service port's commands: DtKV writes and reads, status and watches.
pub(super) fn service_commands(shared: &Arc<NodeShared>) -> CommandSet {
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
    register_watch_commands(&mut c, shared);
    c
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

/// Registers the watch commands on the service port.
fn register_watch_commands(c: &mut CommandSet, shared: &Arc<NodeShared>) {
    let s = shared.clone();
    c.register(CMD_KV_WATCH, move |req: Request, resp: Responder| {
        handle_watch(&s, req, resp, true)
    });
    let s = shared.clone();
    c.register(CMD_KV_UNWATCH, move |req: Request, resp: Responder| {
        handle_watch(&s, req, resp, false)
    });
}

/// Routes a watch or unwatch request to its group task.
fn handle_watch(shared: &NodeShared, req: Request, resp: Responder, watch: bool) {
    let op = if watch { KvOp::WATCH } else { KvOp::UNWATCH };
    let resp = KvResponder::new(resp, &shared.kv_metrics, op, Arrival::of(&req));
    if shared.is_stopping() {
        resp.error(Status::STOPPING, "the node is shutting down");
        return;
    }
    let (group_id, msg) = if watch {
        match WatchRequest::decode(req.body()) {
            Ok(w) => (
                w.group_id,
                GroupMsg::Watch {
                    conn: req.conn().clone(),
                    req: w,
                    responder: resp,
                },
            ),
            Err(e) => {
                resp.reject_malformed(&e.to_string());
                return;
            }
        }
    } else {
        match decode_unwatch(req.body()) {
            Ok((group_id, watch_id)) => (
                group_id,
                GroupMsg::Unwatch {
                    conn_id: req.conn().id(),
                    watch_id,
                    responder: resp,
                },
            ),
            Err(e) => {
                resp.reject_malformed(&e.to_string());
                return;
            }
        }
    };
    let Some(tx) = shared.group_tx(group_id) else {
        if let GroupMsg::Watch { responder, .. } | GroupMsg::Unwatch { responder, .. } = msg {
            responder.error(
                Status::RAFT_GROUP_NOT_FOUND,
                &format!("group {group_id} is not hosted on node {}", shared.node_id),
            );
        }
        return;
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
        if let GroupMsg::Watch { responder, .. } | GroupMsg::Unwatch { responder, .. } = m {
            responder.error(status, text);
        }
    }
}

/// A DtKV request body, decoded on the connection's task.
enum KvBody {
    Write(dongting_kv::Command),
    Read(dongting_kv::ReadRequest),
}

fn handle_kv(shared: &NodeShared, req: Request, resp: Responder, write: bool) {
    let arrived = Arrival::of(&req);
    let env = match proto::decode_kv_request(req.body()) {
        Ok(e) => e,
        Err(e) => {
            KvResponder::new(resp, &shared.kv_metrics, KvOp::INVALID, arrived)
                .reject_malformed(&e.to_string());
            return;
        }
    };
    // Decoded here, on the connection's task, so the group's task (which
    // every write of the group goes through) only applies it.
    let body = if write {
        dongting_kv::decode_command_bytes(&env.body).map(KvBody::Write)
    } else {
        dongting_kv::decode_read_request(&env.body).map(KvBody::Read)
    };
    let op = match &body {
        Ok(KvBody::Write(cmd)) => KvOp::of_write(&cmd.op),
        Ok(KvBody::Read(r)) => KvOp::of_read(r),
        Err(_) => KvOp::INVALID,
    };
    let resp = KvResponder::new(resp, &shared.kv_metrics, op, arrived);
    if shared.stopping.load(Ordering::Relaxed) {
        resp.error(Status::STOPPING, "the node is shutting down");
        return;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            resp.error(Status::CLIENT_ERROR, &e.to_string());
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
    let msg = match body {
        KvBody::Write(cmd) => GroupMsg::Write {
            body: env.body,
            cmd,
            responder: resp,
        },
        KvBody::Read(r) => GroupMsg::Read {
            req: r,
            mode: env.read_mode,
            responder: resp,
        },
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
        proto::CMD_ADMIN_ADD_NODE => {
            return super::servers::add_node(shared, a.node_id, &a.address).await;
        }
        proto::CMD_ADMIN_REMOVE_NODE => {
            return super::servers::remove_node(shared, a.node_id).await;
        }
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
            let ids = super::servers::ids(shared);
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
