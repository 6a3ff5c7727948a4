//! The result of an operation: one plain struct for every kind of call, so
//! bindings need no generics to carry it.

use bytes::Bytes;
use dongting_client::{KeyRead, NodeState, Written};
use dongting_kv::{NodeView, Outcome};

use crate::error::{Error, code};
use crate::server::EmbeddedServer;
use crate::watch::Watch;

/// Which call produced a [`Reply`]. The numbers are stable (the C ABI uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum ReplyKind {
    /// A call without data (stop, close).
    #[default]
    Done = 0,
    /// A write: put, remove, mkdir, batch put/remove, compareAndSet, TTL calls.
    Write = 1,
    /// get: zero nodes (absent) or one.
    Get = 2,
    /// list and listPage: the directory's children ([`Reply::more`]: a page
    /// has children after it).
    List = 3,
    /// batchGet: one node per key (kind [`NodeKind::Absent`] when missing) and
    /// one code per key.
    BatchGet = 4,
    /// An embedded server start: [`Reply::server`] holds it.
    Server = 5,
    /// tryLock: [`Reply::token`] holds the fencing token (0: not acquired).
    Lock = 6,
    /// A watch registration: [`Reply::watch`] holds the watch.
    Watch = 7,
}

/// What a node is. The numbers are stable (the C ABI uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum NodeKind {
    /// No node.
    #[default]
    Absent = 0,
    /// A value.
    Value = 1,
    /// A directory.
    Dir = 2,
    /// A lock.
    Lock = 3,
}

/// One DtKV node as read. `key` and `value` share the receive buffer (no copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Full key (`a.b.c`).
    pub key: Bytes,
    /// The value (empty for directories, locks and absent nodes).
    pub value: Bytes,
    /// Value, directory, lock or absent.
    pub kind: NodeKind,
    /// Raft index of the creation.
    pub create_index: u64,
    /// Leader wall-clock milliseconds of the creation.
    pub create_time_ms: u64,
    /// Raft index of the last change.
    pub update_index: u64,
    /// Leader wall-clock milliseconds of the last change.
    pub update_time_ms: u64,
    /// For a temporary node: its expiry deadline (leader wall-clock ms); 0 otherwise.
    pub ttl_deadline_ms: u64,
    /// For a temporary node: the owning client id; 0 otherwise.
    pub ttl_owner: u64,
}

impl Node {
    pub(crate) fn from_view(v: NodeView) -> Node {
        Node {
            key: v.key,
            value: v.value,
            kind: match v.state {
                NodeState::Absent => NodeKind::Absent,
                NodeState::Value => NodeKind::Value,
                NodeState::Dir => NodeKind::Dir,
                NodeState::Lock => NodeKind::Lock,
            },
            create_index: v.create_index,
            create_time_ms: v.create_time_ms,
            update_index: v.update_index,
            update_time_ms: v.update_time_ms,
            ttl_deadline_ms: v.ttl.map(|t| t.deadline_ms).unwrap_or(0),
            ttl_owner: v.ttl.map(|t| t.owner).unwrap_or(0),
        }
    }

    fn absent(key: Bytes) -> Node {
        Node {
            key,
            ..Node::default()
        }
    }
}

/// The result of a successful operation. Which fields are set depends on
/// [`Reply::kind`]; the others keep their defaults.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The call that produced it.
    pub kind: ReplyKind,
    /// Raft index the answer reflects (0 for calls without one).
    pub index: u64,
    /// put, mkdir: whether the node was created (false: it existed).
    pub created: bool,
    /// putTemp, makeTempDir, updateTtl: the new expiry deadline (leader
    /// wall-clock ms).
    pub deadline_ms: u64,
    /// get (0 or 1), list (children), batchGet (one per key).
    pub nodes: Vec<Node>,
    /// batchPut, batchRemove, batchGet: one code per key in request order
    /// (0: done).
    pub codes: Vec<i32>,
    /// An embedded server start: the running server.
    pub server: Option<EmbeddedServer>,
    /// tryLock: the fencing token of the grant (the raft index of the grant,
    /// larger for every new holder); 0 when the lock was not acquired.
    pub token: u64,
    /// listPage: children follow the last node of this page.
    pub more: bool,
    /// A watch registration: the registered watch.
    pub watch: Option<Watch>,
}

impl Reply {
    pub(crate) fn write(w: Written) -> Reply {
        let mut r = Reply {
            kind: ReplyKind::Write,
            index: w.index,
            ..Reply::default()
        };
        match w.outcome {
            Outcome::Put { created } | Outcome::Mkdir { created } => r.created = created,
            Outcome::Deadline { deadline_ms } => r.deadline_ms = deadline_ms,
            Outcome::Batch(v) => {
                r.codes = v
                    .iter()
                    .map(|x| match x {
                        Ok(()) => code::OK,
                        Err(e) => Error::from_kv(e).code(),
                    })
                    .collect()
            }
            _ => {}
        }
        r
    }

    pub(crate) fn get(index: u64, node: Option<NodeView>) -> Reply {
        Reply {
            kind: ReplyKind::Get,
            index,
            nodes: node.map(Node::from_view).into_iter().collect(),
            ..Reply::default()
        }
    }

    pub(crate) fn list(index: u64, nodes: Vec<NodeView>) -> Reply {
        Reply {
            kind: ReplyKind::List,
            index,
            nodes: nodes.into_iter().map(Node::from_view).collect(),
            ..Reply::default()
        }
    }

    pub(crate) fn page(index: u64, nodes: Vec<NodeView>, more: bool) -> Reply {
        Reply {
            more,
            ..Reply::list(index, nodes)
        }
    }

    pub(crate) fn batch_get(index: u64, keys: &[Bytes], reads: Vec<KeyRead>) -> Reply {
        let mut nodes = Vec::with_capacity(reads.len());
        let mut codes = Vec::with_capacity(reads.len());
        for (i, r) in reads.into_iter().enumerate() {
            let key = keys.get(i).cloned().unwrap_or_default();
            match r {
                Ok(Some(v)) => {
                    nodes.push(Node::from_view(v));
                    codes.push(code::OK);
                }
                Ok(None) => {
                    nodes.push(Node::absent(key));
                    codes.push(code::OK);
                }
                Err(e) => {
                    nodes.push(Node::absent(key));
                    codes.push(Error::from_kv(&e).code());
                }
            }
        }
        Reply {
            kind: ReplyKind::BatchGet,
            index,
            nodes,
            codes,
            ..Reply::default()
        }
    }
}
