//! The inbox of a group task: what handlers, the node and the admin path
//! send to the one task that owns a group's state.

use std::time::Duration;

use bytes::Bytes;
use dongting_kv::ReadRequest;
use dongting_net::Status;
use dongting_raft::Message;
use tokio::sync::oneshot;

use crate::metrics_kv::KvResponder;
use dongting_proto::service::{AdminResponse, ReadMode};

/// An admin operation on one group.
#[derive(Debug, Clone)]
pub(crate) enum AdminOp {
    TransferLeader {
        target: u32,
        timeout_ms: u64,
    },
    Prepare {
        members: Vec<u32>,
        observers: Vec<u32>,
    },
    Commit {
        prepare_index: u64,
    },
    Abort,
    Snapshot,
}

/// The answer to an admin operation: a response or an error status and message.
pub(crate) type AdminReply = Result<AdminResponse, (Status, String)>;

/// What handlers send to a group task.
pub(crate) enum GroupMsg {
    /// A client write: the DtKV command bytes.
    Write {
        body: Bytes,
        /// `body` decoded (by the connection's task).
        cmd: dongting_kv::Command,
        responder: KvResponder,
    },
    /// A client read.
    Read {
        req: ReadRequest,
        mode: ReadMode,
        responder: KvResponder,
    },
    /// Raft messages from a peer.
    Raft(Vec<Message>),
    /// Register (or confirm) a watch of the connection (see `watch.rs`).
    Watch {
        conn: dongting_net::ConnHandle,
        req: dongting_proto::watch::WatchRequest,
        responder: KvResponder,
    },
    /// Remove a watch of the connection.
    Unwatch {
        conn_id: u64,
        watch_id: u64,
        responder: KvResponder,
    },
    /// An admin operation.
    Admin {
        op: AdminOp,
        reply: oneshot::Sender<AdminReply>,
    },
    /// Publish the status copy now (a status request is about to read it).
    Publish(oneshot::Sender<()>),
    /// Stop: finish in-flight writes within `grace`, then sync and close
    /// (deleting the group's data when `delete`).
    Stop {
        grace: Duration,
        delete: bool,
        reply: oneshot::Sender<()>,
    },
}
