//! Reads at the applied index: get, batch get, whole and paged lists, lock
//! info, and the read requests and responses that carry them.

use bytes::Bytes;

use crate::error::KvError;
use crate::key::{show, validate_key};
use crate::store::{Node, NodeKind};
use crate::types::{LockView, NodeState, NodeView, ReadResult, TtlView};

use super::KvStateMachine;

/// A read request (the client protocol's read bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRequest {
    /// One key; the empty key reads the root directory.
    Get(Bytes),
    /// Several keys, one result each.
    BatchGet(Vec<Bytes>),
    /// The children of a directory; the empty key lists the root. Answered
    /// whole, or TOO_MANY_KEYS when they do not fit one answer.
    List(Bytes),
    /// One page of a directory's children.
    ListPage(Bytes, ListPage),
    /// The holder, token, lease and queue length of a lock.
    LockInfo(Bytes),
}

/// The data a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResponse {
    /// The node, or `None` when absent.
    Get(Option<NodeView>),
    /// One result per requested key, in order.
    BatchGet(Vec<Result<Option<NodeView>, KvError>>),
    /// The directory's children, sorted by key.
    List(Vec<NodeView>),
    /// One page of the children, sorted by key; `more` when children follow.
    ListPage {
        /// The page's children.
        nodes: Vec<NodeView>,
        /// True when children follow the page's last key.
        more: bool,
    },
    /// The lock, or `None` when no lock node exists at the key.
    LockInfo(Option<LockView>),
}

/// Children a page holds when its request names no limit.
pub const DEFAULT_LIST_PAGE: u32 = 1_000;
/// Most children one page holds; a larger limit is served as this one.
pub const MAX_LIST_PAGE: u32 = 10_000;
/// Bytes counted per listed child on top of its key and value: the encoded
/// answer's tables, metadata and padding stay under it.
const LIST_ITEM_OVERHEAD: usize = 128;

/// Which page of a directory's children a List reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Children whose key sorts after this full key (empty: from the first child).
    pub start_after: Bytes,
    /// Most children the page holds (0: [`DEFAULT_LIST_PAGE`]; at most [`MAX_LIST_PAGE`]).
    pub limit: u32,
}

/// What a listed child counts against `max_read_bytes`.
fn listed_bytes(key: &Bytes, n: &Node) -> usize {
    let value = match &n.kind {
        NodeKind::Value(v) => v.len(),
        _ => 0,
    };
    key.len() + value + LIST_ITEM_OVERHEAD
}

/// One key's slot in a batch read: its node (if any), or why the key was refused.
pub type KeyRead = Result<Option<NodeView>, KvError>;

impl KvStateMachine {
    fn view(&self, key: &Bytes, n: &Node) -> NodeView {
        let (state, value) = match &n.kind {
            NodeKind::Value(v) => (NodeState::Value, v.clone()),
            NodeKind::Dir => (NodeState::Dir, Bytes::new()),
            NodeKind::Lock(_) => (NodeState::Lock, Bytes::new()),
        };
        NodeView {
            key: key.clone(),
            state,
            value,
            create_index: n.create_index,
            create_time_ms: n.create_time_ms,
            update_index: n.update_index,
            update_time_ms: n.update_time_ms,
            ttl: n.ttl.map(|t| TtlView {
                owner: t.owner,
                deadline_ms: t.deadline_ms,
            }),
        }
    }

    fn get_view(&self, key: &Bytes) -> Result<Option<NodeView>, KvError> {
        validate_key(key, self.limits.max_key_bytes, true)?;
        if key.is_empty() {
            return Ok(Some(NodeView {
                key: Bytes::new(),
                state: NodeState::Dir,
                value: Bytes::new(),
                create_index: 0,
                create_time_ms: 0,
                update_index: 0,
                update_time_ms: 0,
                ttl: None,
            }));
        }
        Ok(self.store.get(key).map(|n| self.view(key, n)))
    }

    /// Reads one key (the empty key is the root directory). Cost: one hash lookup.
    pub fn get(&self, key: &Bytes) -> Result<ReadResult<Option<NodeView>>, KvError> {
        Ok(ReadResult {
            index: self.applied_index,
            data: self.get_view(key)?,
        })
    }

    /// Reads several keys, one result each (a bad key fails only its own slot).
    pub fn batch_get(&self, keys: &[Bytes]) -> Result<ReadResult<Vec<KeyRead>>, KvError> {
        self.check_batch(keys.len())?;
        Ok(ReadResult {
            index: self.applied_index,
            data: keys.iter().map(|k| self.get_view(k)).collect(),
        })
    }

    /// The children of directory `dir`, sorted by key (the empty key lists the
    /// root). Fails with TOO_MANY_KEYS when they do not fit one answer of
    /// `max_read_bytes`: such a directory is listed with [`Self::list_page`].
    /// Cost: O(children).
    pub fn list(&self, dir: &Bytes) -> Result<ReadResult<Vec<NodeView>>, KvError> {
        self.check_dir(dir)?;
        let mut bytes = 0usize;
        let mut data = Vec::new();
        for k in self.store.children(dir) {
            let Some(n) = self.store.get(k) else { continue };
            bytes += listed_bytes(k, n);
            if bytes > self.limits.max_read_bytes {
                return Err(KvError::TooManyKeys(format!(
                    "{} has more children than one answer of {} bytes holds (over {}); \
                     list it in pages",
                    if dir.is_empty() {
                        "the root".to_owned()
                    } else {
                        show(dir)
                    },
                    self.limits.max_read_bytes,
                    data.len() + 1
                )));
            }
            data.push(self.view(k, n));
        }
        Ok(ReadResult {
            index: self.applied_index,
            data,
        })
    }

    /// One page of directory `dir`'s children: those after `page.start_after`,
    /// sorted by key, at most `page.limit` of them and at most `max_read_bytes`
    /// of keys and values (always at least one child when any follows). The
    /// flag is true when more children follow the page. Cost: O(log children +
    /// page).
    pub fn list_page(
        &self,
        dir: &Bytes,
        page: &ListPage,
    ) -> Result<ReadResult<(Vec<NodeView>, bool)>, KvError> {
        self.check_dir(dir)?;
        if !page.start_after.is_empty() {
            validate_key(&page.start_after, self.limits.max_key_bytes, false)?;
        }
        let limit = match page.limit {
            0 => DEFAULT_LIST_PAGE,
            n => n.min(MAX_LIST_PAGE),
        } as usize;
        let mut nodes = Vec::new();
        let mut bytes = 0usize;
        let mut more = false;
        for k in self.store.children_after(dir, &page.start_after) {
            let Some(n) = self.store.get(k) else { continue };
            let size = listed_bytes(k, n);
            if nodes.len() == limit
                || (!nodes.is_empty() && bytes + size > self.limits.max_read_bytes)
            {
                more = true;
                break;
            }
            bytes += size;
            nodes.push(self.view(k, n));
        }
        Ok(ReadResult {
            index: self.applied_index,
            data: (nodes, more),
        })
    }

    /// Fails unless `dir` is the root or an existing directory.
    fn check_dir(&self, dir: &Bytes) -> Result<(), KvError> {
        validate_key(dir, self.limits.max_key_bytes, true)?;
        if !dir.is_empty() {
            match self.store.get(dir) {
                None => {
                    return Err(KvError::NotFound(format!("{} does not exist", show(dir))));
                }
                Some(n) if !n.is_dir() => {
                    return Err(KvError::NotDir(format!("{} is not a directory", show(dir))));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The lock at `key`: holder (client, fencing token, lease deadline) and
    /// number of waiters; `None` when there is no lock node. A client computes
    /// its lease rest as `lease_deadline_ms - its_clock_ms`.
    pub fn lock_info(&self, key: &Bytes) -> Result<ReadResult<Option<LockView>>, KvError> {
        self.check_key(key)?;
        let data = match self.store.get(key).map(|n| &n.kind) {
            None => None,
            Some(NodeKind::Lock(l)) => Some(LockView {
                holder: Some((
                    l.holder.client_id,
                    l.holder.token,
                    l.holder.lease_deadline_ms,
                )),
                waiters: u32::try_from(l.waiters.len()).unwrap_or(u32::MAX),
            }),
            Some(_) => {
                return Err(KvError::NotLockNode(format!("{} is not a lock", show(key))));
            }
        };
        Ok(ReadResult {
            index: self.applied_index,
            data,
        })
    }

    /// Answers any read request at the applied index.
    pub fn read(&self, req: &ReadRequest) -> ReadResult<Result<ReadResponse, KvError>> {
        let data = match req {
            ReadRequest::Get(k) => self.get(k).map(|r| ReadResponse::Get(r.data)),
            ReadRequest::BatchGet(ks) => self.batch_get(ks).map(|r| ReadResponse::BatchGet(r.data)),
            ReadRequest::List(k) => self.list(k).map(|r| ReadResponse::List(r.data)),
            ReadRequest::ListPage(k, p) => self.list_page(k, p).map(|r| {
                let (nodes, more) = r.data;
                ReadResponse::ListPage { nodes, more }
            }),
            ReadRequest::LockInfo(k) => self.lock_info(k).map(|r| ReadResponse::LockInfo(r.data)),
        };
        ReadResult {
            index: self.applied_index,
            data,
        }
    }
}
