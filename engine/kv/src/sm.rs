//! The DtKV state machine: applies write commands at raft indexes and answers
//! reads. Pure and deterministic: no IO, clocks or threads; the only time it
//! knows is the leader time carried by each command.

use bytes::Bytes;

use crate::error::KvError;
use crate::history::EventHistory;
use crate::key::{SEPARATOR, parent_of, show, validate_key};
use crate::limits::KvLimits;
use crate::session::{Check, Sessions};
use crate::store::{Holder, LockState, Node, NodeKind, Store, Ttl, Waiter};
use crate::types::{
    ApplyResult, ClientId, Command, ExpireCandidate, LockNotification, LockNotificationKind,
    LockOutcome, LockView, NodeState, NodeView, Op, Outcome, ReadResult, TtlView, WatchEvent,
    WriteResult,
};

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

/// Per-apply scratch: the index and leader time, and what the apply produced.
struct Ctx {
    index: u64,
    now_ms: u64,
    client: ClientId,
    events: Vec<WatchEvent>,
    notifications: Vec<LockNotification>,
}

impl Ctx {
    fn event(&mut self, key: &[u8], node: Option<&Node>) {
        let (state, value) = match node.map(|n| &n.kind) {
            None => (NodeState::Absent, Bytes::new()),
            Some(NodeKind::Value(v)) => (NodeState::Value, v.clone()),
            Some(NodeKind::Dir) => (NodeState::Dir, Bytes::new()),
            Some(NodeKind::Lock(_)) => (NodeState::Lock, Bytes::new()),
        };
        self.events.push(WatchEvent {
            index: self.index,
            key: Bytes::copy_from_slice(key),
            state,
            value,
        });
    }
}

/// One key's slot in a batch read: its node (if any), or why the key was refused.
pub type KeyRead = Result<Option<NodeView>, KvError>;

/// The DtKV state machine of one raft group.
///
/// Apply cost: one hash lookup per key plus the parent lookup; creating or
/// removing a node also updates its parent's sorted children set (O(log n)).
/// Values are never copied: they stay the `Bytes` the command was decoded into.
#[derive(Debug, Clone)]
pub struct KvStateMachine {
    pub(crate) limits: KvLimits,
    pub(crate) store: Store,
    pub(crate) sessions: Sessions,
    pub(crate) history: EventHistory,
    pub(crate) applied_index: u64,
    pub(crate) last_time_ms: u64,
}

fn deadline(now_ms: u64, ms: u64) -> u64 {
    now_ms.saturating_add(ms)
}

impl KvStateMachine {
    /// An empty state machine (only the root directory) at applied index 0.
    pub fn new(limits: KvLimits) -> KvStateMachine {
        let history = EventHistory::new(0, limits.max_history_events, limits.max_history_bytes);
        KvStateMachine {
            limits,
            store: Store::new(),
            sessions: Sessions::default(),
            history,
            applied_index: 0,
            last_time_ms: 0,
        }
    }

    /// The limits this state machine enforces.
    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// The raft index of the last applied entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The largest leader time seen in an applied command (milliseconds).
    pub fn last_time_ms(&self) -> u64 {
        self.last_time_ms
    }

    /// Number of nodes (the root directory is not counted).
    pub fn node_count(&self) -> usize {
        self.store.len()
    }

    /// Number of client sessions kept for deduplication.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Marks a raft entry that carries no DtKV command (a no-op or a membership
    /// change) as applied. Ignored when `index` is not above the applied index.
    pub fn advance(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// Decodes and applies a raw log entry payload. A payload that does not
    /// decode is applied as a failed command (`INVALID_COMMAND`, no change) so
    /// every replica advances identically.
    pub fn apply_bytes(&mut self, index: u64, payload: &Bytes) -> ApplyResult {
        match crate::codec::decode_command_bytes(payload) {
            Ok(cmd) => self.apply(index, &cmd),
            Err(e) => {
                if index > self.applied_index {
                    self.applied_index = index;
                }
                tracing::warn!(index, error = %e, "kv log entry does not decode");
                ApplyResult {
                    result: WriteResult {
                        index,
                        outcome: Err(e),
                    },
                    events: Vec::new(),
                    notifications: Vec::new(),
                    deduplicated: false,
                }
            }
        }
    }

    /// Applies one write command at raft `index` (which must be above the applied
    /// index; otherwise nothing changes and the result is `INDEX_NOT_INCREASING`).
    ///
    /// Returns the client's result, the watch events and the lock notifications
    /// to push. A retried command (same client id and sequence number) is
    /// answered with its original result and changes nothing.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> ApplyResult {
        let mut out = ApplyResult {
            result: WriteResult {
                index,
                outcome: Ok(Outcome::Done),
            },
            events: Vec::new(),
            notifications: Vec::new(),
            deduplicated: false,
        };
        if index <= self.applied_index {
            tracing::warn!(
                index,
                applied = self.applied_index,
                "kv apply index not increasing"
            );
            out.result.outcome = Err(KvError::IndexNotIncreasing(format!(
                "index {index} is not above the applied index {}",
                self.applied_index
            )));
            return out;
        }
        self.applied_index = index;
        self.last_time_ms = self.last_time_ms.max(cmd.leader_time_ms);
        let now_ms = cmd.leader_time_ms;
        self.sessions.expire(now_ms, &self.limits);

        if cmd.client_id != 0 {
            match self.sessions.check(cmd.client_id, cmd.seq, cmd.acked_below) {
                Check::New => {}
                Check::Duplicate(r) => {
                    out.result = r;
                    out.deduplicated = true;
                    return out;
                }
                Check::TooOld { floor } => {
                    out.result.outcome = Err(KvError::SeqTooOld(format!(
                        "client {} sequence {} is below {floor}, whose results are no longer kept; this attempt was not applied",
                        cmd.client_id, cmd.seq
                    )));
                    return out;
                }
            }
        }

        let mut ctx = Ctx {
            index,
            now_ms,
            client: cmd.client_id,
            events: Vec::new(),
            notifications: Vec::new(),
        };
        let outcome = self.execute(&mut ctx, &cmd.op);
        if let Err(e) = &outcome {
            tracing::debug!(
                index,
                op = cmd.op.name(),
                code = e.code(),
                "kv command failed"
            );
        }
        out.result.outcome = outcome;
        if cmd.client_id != 0 {
            self.sessions.record(
                cmd.client_id,
                cmd.seq,
                cmd.acked_below,
                now_ms,
                out.result.clone(),
                &self.limits,
            );
        }
        self.history.push(&ctx.events);
        out.events = ctx.events;
        out.notifications = ctx.notifications;
        out
    }

    fn execute(&mut self, ctx: &mut Ctx, op: &Op) -> Result<Outcome, KvError> {
        match op {
            Op::Put { key, value } => self.put(ctx, key, value),
            Op::Remove { key } => self.remove(ctx, key).map(|()| Outcome::Done),
            Op::Mkdir { key } => self.mkdir(ctx, key),
            Op::BatchPut { entries } => {
                self.check_batch(entries.len())?;
                let results = entries
                    .iter()
                    .map(|(k, v)| self.put(ctx, k, v).map(|_| ()))
                    .collect();
                Ok(Outcome::Batch(results))
            }
            Op::BatchRemove { keys } => {
                self.check_batch(keys.len())?;
                let results = keys.iter().map(|k| self.remove(ctx, k)).collect();
                Ok(Outcome::Batch(results))
            }
            Op::CompareAndSet {
                key,
                expected,
                new_value,
            } => self.compare_and_set(ctx, key, expected, new_value),
            Op::PutTemp { key, value, ttl_ms } => self.put_temp(ctx, key, value, *ttl_ms),
            Op::MakeTempDir { key, ttl_ms } => self.make_temp_dir(ctx, key, *ttl_ms),
            Op::UpdateTtl { key, ttl_ms } => self.update_ttl(ctx, key, *ttl_ms),
            Op::TryLock {
                key,
                lease_ms,
                wait_timeout_ms,
            } => self.try_lock(ctx, key, *lease_ms, *wait_timeout_ms),
            Op::Unlock { key } => self.unlock(ctx, key),
            Op::UpdateLease { key, lease_ms } => self.update_lease(ctx, key, *lease_ms),
            Op::Expire {
                key,
                expected_version,
            } => self.expire(ctx, key, *expected_version),
        }
    }

    // ----- checks shared by the operations -----

    fn check_batch(&self, n: usize) -> Result<(), KvError> {
        if n == 0 || n > self.limits.max_batch_keys {
            return Err(KvError::TooManyKeys(format!(
                "a batch needs 1 to {} keys, got {n}",
                self.limits.max_batch_keys
            )));
        }
        Ok(())
    }

    fn check_key(&self, key: &[u8]) -> Result<(), KvError> {
        validate_key(key, self.limits.max_key_bytes, false)
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if value.is_empty() {
            return Err(KvError::InvalidValue(format!(
                "value for {} is empty (use remove to delete, mkdir for a directory)",
                show(key)
            )));
        }
        if value.len() > self.limits.max_value_bytes {
            return Err(KvError::ValueTooLarge(format!(
                "value for {} is {} bytes, limit is {}",
                show(key),
                value.len(),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    fn check_ms(&self, what: &str, ms: u64, allow_zero: bool) -> Result<(), KvError> {
        if (ms == 0 && !allow_zero) || ms > self.limits.max_ttl_ms {
            let min = u64::from(!allow_zero);
            return Err(KvError::InvalidTtl(format!(
                "{what} is {ms} ms, must be {min} to {} ms",
                self.limits.max_ttl_ms
            )));
        }
        Ok(())
    }

    /// The parent of `key` must exist and be a plain or temporary directory.
    fn check_parent(&self, key: &[u8]) -> Result<(), KvError> {
        let parent = parent_of(key);
        if parent.is_empty() {
            return Ok(());
        }
        match self.store.get(parent).map(|n| &n.kind) {
            None => Err(KvError::ParentNotFound(format!(
                "parent directory {} of {} does not exist",
                show(parent),
                show(key)
            ))),
            Some(NodeKind::Dir) => Ok(()),
            Some(NodeKind::Value(_)) => Err(KvError::ParentNotDir(format!(
                "parent {} of {} is a value, not a directory",
                show(parent),
                show(key)
            ))),
            Some(NodeKind::Lock(_)) => Err(KvError::ParentIsLock(format!(
                "parent {} of {} is a lock",
                show(parent),
                show(key)
            ))),
        }
    }

    fn require_client(&self, ctx: &Ctx, what: &str) -> Result<(), KvError> {
        if ctx.client == 0 {
            return Err(KvError::InvalidCommand(format!(
                "{what} needs a client id (the owner); client id 0 means no session"
            )));
        }
        Ok(())
    }

    // ----- plain values and directories -----

    fn put(&mut self, ctx: &mut Ctx, key: &[u8], value: &Bytes) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        self.check_value(key, value)?;
        self.check_parent(key)?;
        // One lookup when the key exists: check and overwrite in place.
        let (index, now) = (ctx.index, ctx.now_ms);
        let updated = self.store.update(key, |n| {
            Self::check_plain_value(key, n)?;
            n.kind = NodeKind::Value(value.clone());
            n.update_index = index;
            n.update_time_ms = now;
            Ok(())
        });
        match updated {
            None => {
                let node = Node::new(NodeKind::Value(value.clone()), ctx.index, ctx.now_ms);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
                Ok(Outcome::Put { created: true })
            }
            Some(r) => {
                r?;
                ctx.events.push(WatchEvent {
                    index,
                    key: Bytes::copy_from_slice(key),
                    state: NodeState::Value,
                    value: value.clone(),
                });
                Ok(Outcome::Put { created: false })
            }
        }
    }

    /// A plain (non-temporary) value may be overwritten by put and cas.
    fn check_plain_value(key: &[u8], n: &Node) -> Result<(), KvError> {
        match n.kind {
            NodeKind::Dir => Err(KvError::IsDir(format!("{} is a directory", show(key)))),
            NodeKind::Lock(_) => Err(KvError::IsLock(format!("{} is a lock", show(key)))),
            NodeKind::Value(_) if n.ttl.is_some() => Err(KvError::IsTempNode(format!(
                "{} is a temporary node; use putTemp",
                show(key)
            ))),
            NodeKind::Value(_) => Ok(()),
        }
    }

    fn set_value(&mut self, ctx: &mut Ctx, key: &[u8], value: Bytes) {
        let (index, now) = (ctx.index, ctx.now_ms);
        let event_value = value.clone();
        let updated = self.store.update(key, |n| {
            n.kind = NodeKind::Value(value);
            n.update_index = index;
            n.update_time_ms = now;
        });
        debug_assert!(updated.is_some(), "set_value on a missing key");
        ctx.events.push(WatchEvent {
            index,
            key: Bytes::copy_from_slice(key),
            state: NodeState::Value,
            value: event_value,
        });
    }

    fn remove(&mut self, ctx: &mut Ctx, key: &[u8]) -> Result<(), KvError> {
        self.check_key(key)?;
        let Some(n) = self.store.get(key) else {
            return Err(KvError::NotFound(format!("{} does not exist", show(key))));
        };
        if let NodeKind::Lock(_) = n.kind {
            return Err(KvError::IsLock(format!(
                "{} is a lock; use unlock",
                show(key)
            )));
        }
        if let Some(ttl) = n.ttl
            && ttl.owner != ctx.client
        {
            return Err(KvError::NotOwner(format!(
                "{} is a temporary node of client {}",
                show(key),
                ttl.owner
            )));
        }
        if n.is_dir() && self.store.child_count(key) > 0 {
            return Err(KvError::DirNotEmpty(format!(
                "directory {} has {} children",
                show(key),
                self.store.child_count(key)
            )));
        }
        self.store.remove(key);
        ctx.event(key, None);
        Ok(())
    }

    fn mkdir(&mut self, ctx: &mut Ctx, key: &[u8]) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        self.check_parent(key)?;
        match self.store.get(key) {
            None => {
                let node = Node::new(NodeKind::Dir, ctx.index, ctx.now_ms);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
                Ok(Outcome::Mkdir { created: true })
            }
            Some(n) => match n.kind {
                NodeKind::Dir if n.ttl.is_some() => Err(KvError::IsTempNode(format!(
                    "{} is a temporary directory; use makeTempDir",
                    show(key)
                ))),
                NodeKind::Dir => Ok(Outcome::Mkdir { created: false }),
                NodeKind::Value(_) => Err(KvError::NotDir(format!(
                    "{} is a value, not a directory",
                    show(key)
                ))),
                NodeKind::Lock(_) => Err(KvError::IsLock(format!("{} is a lock", show(key)))),
            },
        }
    }

    fn compare_and_set(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        expected: &Bytes,
        new_value: &Bytes,
    ) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        if !new_value.is_empty() {
            self.check_value(key, new_value)?;
        }
        match self.store.get(key) {
            None => {
                if !expected.is_empty() {
                    return Err(KvError::CasMismatch(format!(
                        "{} is absent, expected a value",
                        show(key)
                    )));
                }
                if !new_value.is_empty() {
                    self.check_parent(key)?;
                    let node = Node::new(NodeKind::Value(new_value.clone()), ctx.index, ctx.now_ms);
                    ctx.event(key, Some(&node));
                    self.store.insert(key, node);
                }
                Ok(Outcome::Done)
            }
            Some(n) => {
                Self::check_plain_value(key, n)?;
                let NodeKind::Value(cur) = &n.kind else {
                    return Err(KvError::Internal("checked value is not a value".into()));
                };
                if expected.is_empty() {
                    return Err(KvError::CasMismatch(format!(
                        "{} exists, expected it absent",
                        show(key)
                    )));
                }
                if cur != expected {
                    return Err(KvError::CasMismatch(format!(
                        "{} holds a different value ({} bytes)",
                        show(key),
                        cur.len()
                    )));
                }
                if new_value.is_empty() {
                    self.store.remove(key);
                    ctx.event(key, None);
                } else {
                    self.set_value(ctx, key, new_value.clone());
                }
                Ok(Outcome::Done)
            }
        }
    }

    // ----- temporary nodes -----

    fn put_temp(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        value: &Bytes,
        ttl_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "putTemp")?;
        self.check_key(key)?;
        self.check_value(key, value)?;
        self.check_ms("ttl", ttl_ms, false)?;
        self.check_parent(key)?;
        let ttl = Ttl {
            owner: ctx.client,
            deadline_ms: deadline(ctx.now_ms, ttl_ms),
        };
        match self.store.get(key) {
            None => {
                let mut node = Node::new(NodeKind::Value(value.clone()), ctx.index, ctx.now_ms);
                node.ttl = Some(ttl);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
            }
            Some(n) => {
                match n.kind {
                    NodeKind::Dir => {
                        return Err(KvError::IsDir(format!("{} is a directory", show(key))));
                    }
                    NodeKind::Lock(_) => {
                        return Err(KvError::IsLock(format!("{} is a lock", show(key))));
                    }
                    NodeKind::Value(_) => {}
                }
                self.check_owner(ctx, key, n)?;
                self.rearm(ctx, key, ttl);
                self.set_value(ctx, key, value.clone());
            }
        }
        Ok(Outcome::Deadline {
            deadline_ms: ttl.deadline_ms,
        })
    }

    fn check_owner(&self, ctx: &Ctx, key: &[u8], n: &Node) -> Result<(), KvError> {
        match n.ttl {
            None => Err(KvError::NotTempNode(format!(
                "{} is not a temporary node",
                show(key)
            ))),
            Some(t) if t.owner != ctx.client => Err(KvError::NotOwner(format!(
                "{} is a temporary node of client {}",
                show(key),
                t.owner
            ))),
            Some(_) => Ok(()),
        }
    }

    fn rearm(&mut self, ctx: &Ctx, key: &[u8], ttl: Ttl) {
        let index = ctx.index;
        self.store.update(key, |n| {
            n.ttl = Some(ttl);
            n.expire_version = index;
        });
    }

    fn make_temp_dir(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        ttl_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "makeTempDir")?;
        self.check_key(key)?;
        self.check_ms("ttl", ttl_ms, false)?;
        self.check_parent(key)?;
        let ttl = Ttl {
            owner: ctx.client,
            deadline_ms: deadline(ctx.now_ms, ttl_ms),
        };
        match self.store.get(key) {
            None => {
                let mut node = Node::new(NodeKind::Dir, ctx.index, ctx.now_ms);
                node.ttl = Some(ttl);
                ctx.event(key, Some(&node));
                self.store.insert(key, node);
            }
            Some(n) => {
                match n.kind {
                    NodeKind::Value(_) => {
                        return Err(KvError::NotDir(format!(
                            "{} is a value, not a directory",
                            show(key)
                        )));
                    }
                    NodeKind::Lock(_) => {
                        return Err(KvError::IsLock(format!("{} is a lock", show(key))));
                    }
                    NodeKind::Dir => {}
                }
                self.check_owner(ctx, key, n)?;
                self.rearm(ctx, key, ttl);
            }
        }
        Ok(Outcome::Deadline {
            deadline_ms: ttl.deadline_ms,
        })
    }

    fn update_ttl(&mut self, ctx: &mut Ctx, key: &[u8], ttl_ms: u64) -> Result<Outcome, KvError> {
        self.require_client(ctx, "updateTtl")?;
        self.check_key(key)?;
        self.check_ms("ttl", ttl_ms, false)?;
        let Some(n) = self.store.get(key) else {
            return Err(KvError::NotFound(format!("{} does not exist", show(key))));
        };
        self.check_owner(ctx, key, n)?;
        let ttl = Ttl {
            owner: ctx.client,
            deadline_ms: deadline(ctx.now_ms, ttl_ms),
        };
        self.rearm(ctx, key, ttl);
        Ok(Outcome::Deadline {
            deadline_ms: ttl.deadline_ms,
        })
    }

    /// Applies a leader's expiry proposal. Nothing happens (and `expired` is
    /// false) when the node is gone, was re-armed since (its expire version is
    /// not `expected_version`), or its deadline is after this command's time.
    fn expire(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        expected_version: u64,
    ) -> Result<Outcome, KvError> {
        self.check_key(key)?;
        let Some(n) = self.store.get(key) else {
            return Ok(Outcome::Expire { expired: false });
        };
        let version_ok = n.expire_version == expected_version;
        if let NodeKind::Lock(_) = n.kind {
            let expired = self.expire_lock(ctx, key, version_ok);
            return Ok(Outcome::Expire { expired });
        }
        let due = n.ttl.is_some_and(|t| t.deadline_ms <= ctx.now_ms);
        if !(version_ok && due) {
            return Ok(Outcome::Expire { expired: false });
        }
        // The whole subtree goes in this one entry, deepest first, so no reader
        // ever sees a child without its parent.
        for k in self.store.subtree_post_order(key) {
            self.store.remove(&k);
            ctx.event(&k, None);
        }
        self.store.remove(key);
        ctx.event(key, None);
        tracing::debug!(index = ctx.index, key = %show(key), "kv temporary node expired");
        Ok(Outcome::Expire { expired: true })
    }

    // ----- locks -----

    fn try_lock(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        lease_ms: u64,
        wait_timeout_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "tryLock")?;
        self.check_key(key)?;
        self.check_ms("lease", lease_ms, false)?;
        self.check_ms("wait timeout", wait_timeout_ms, true)?;
        self.check_parent(key)?;
        let mut dir = parent_of(key);
        while !dir.is_empty() {
            if self.store.get(dir).is_some_and(|n| n.ttl.is_some()) {
                return Err(KvError::UnderTempDir(format!(
                    "lock {} would be under temporary directory {}",
                    show(key),
                    show(dir)
                )));
            }
            dir = parent_of(dir);
        }
        let client = ctx.client;
        let lease_deadline_ms = deadline(ctx.now_ms, lease_ms);
        let Some(n) = self.store.get(key) else {
            let holder = Holder {
                client_id: client,
                token: ctx.index,
                lease_deadline_ms,
            };
            let lock = LockState {
                holder,
                waiters: Default::default(),
            };
            let node = Node::new(NodeKind::Lock(Box::new(lock)), ctx.index, ctx.now_ms);
            ctx.event(key, Some(&node));
            self.store.insert(key, node);
            return Ok(Outcome::Lock(LockOutcome::Acquired {
                token: ctx.index,
                lease_deadline_ms,
            }));
        };
        let NodeKind::Lock(lock) = &n.kind else {
            return Err(KvError::NotLockNode(format!("{} is not a lock", show(key))));
        };
        if lock.holder.client_id == client {
            let token = lock.holder.token;
            let index = ctx.index;
            self.store.update(key, |n| {
                if let NodeKind::Lock(l) = &mut n.kind {
                    l.holder.lease_deadline_ms = lease_deadline_ms;
                    n.expire_version = index;
                }
            });
            return Ok(Outcome::Lock(LockOutcome::Acquired {
                token,
                lease_deadline_ms,
            }));
        }
        if wait_timeout_ms == 0 {
            return Ok(Outcome::Lock(LockOutcome::NotAcquired {
                holder: lock.holder.client_id,
            }));
        }
        let queued = lock.waiters.iter().position(|w| w.client_id == client);
        if queued.is_none() && lock.waiters.len() >= self.limits.max_lock_waiters {
            return Err(KvError::TooManyWaiters(format!(
                "lock {} already has {} waiters",
                show(key),
                lock.waiters.len()
            )));
        }
        let waiter = Waiter {
            client_id: client,
            lease_ms,
            wait_deadline_ms: deadline(ctx.now_ms, wait_timeout_ms),
        };
        let position = self
            .store
            .update(key, |n| {
                let NodeKind::Lock(l) = &mut n.kind else {
                    return 0;
                };
                match queued {
                    Some(p) => {
                        l.waiters[p] = waiter;
                        p
                    }
                    None => {
                        l.waiters.push_back(waiter);
                        l.waiters.len() - 1
                    }
                }
            })
            .unwrap_or(0);
        Ok(Outcome::Lock(LockOutcome::Queued {
            position: u32::try_from(position).unwrap_or(u32::MAX),
            wait_deadline_ms: waiter.wait_deadline_ms,
        }))
    }

    fn lock_of<'a>(&'a self, key: &[u8]) -> Result<&'a LockState, KvError> {
        match self.store.get(key).map(|n| &n.kind) {
            None => Err(KvError::NotFound(format!(
                "lock {} does not exist",
                show(key)
            ))),
            Some(NodeKind::Lock(l)) => Ok(l),
            Some(_) => Err(KvError::NotLockNode(format!("{} is not a lock", show(key)))),
        }
    }

    fn unlock(&mut self, ctx: &mut Ctx, key: &[u8]) -> Result<Outcome, KvError> {
        self.require_client(ctx, "unlock")?;
        self.check_key(key)?;
        let lock = self.lock_of(key)?;
        if lock.holder.client_id == ctx.client {
            self.release(ctx, key);
            return Ok(Outcome::Done);
        }
        let Some(p) = lock.waiters.iter().position(|w| w.client_id == ctx.client) else {
            return Err(KvError::NotOwner(format!(
                "lock {} is held by client {}",
                show(key),
                lock.holder.client_id
            )));
        };
        self.store.update(key, |n| {
            if let NodeKind::Lock(l) = &mut n.kind {
                l.waiters.remove(p);
            }
        });
        Ok(Outcome::Done)
    }

    /// The holder leaves: the first waiter whose wait has not timed out becomes
    /// the holder with a fresh token (this index), or the lock node is removed.
    fn release(&mut self, ctx: &mut Ctx, key: &[u8]) {
        let (index, now) = (ctx.index, ctx.now_ms);
        let mut timed_out = Vec::new();
        let promoted = self
            .store
            .update(key, |n| {
                let NodeKind::Lock(l) = &mut n.kind else {
                    return None;
                };
                while let Some(w) = l.waiters.pop_front() {
                    if w.wait_deadline_ms <= now {
                        timed_out.push(w.client_id);
                        continue;
                    }
                    l.holder = Holder {
                        client_id: w.client_id,
                        token: index,
                        lease_deadline_ms: deadline(now, w.lease_ms),
                    };
                    n.expire_version = index;
                    n.update_index = index;
                    n.update_time_ms = now;
                    return Some(l.holder);
                }
                None
            })
            .flatten();
        let key_bytes = Bytes::copy_from_slice(key);
        for client_id in timed_out {
            ctx.notifications.push(LockNotification {
                client_id,
                key: key_bytes.clone(),
                kind: LockNotificationKind::WaitTimedOut,
            });
        }
        match promoted {
            Some(h) => {
                ctx.notifications.push(LockNotification {
                    client_id: h.client_id,
                    key: key_bytes,
                    kind: LockNotificationKind::Acquired {
                        token: h.token,
                        lease_deadline_ms: h.lease_deadline_ms,
                    },
                });
                ctx.event(key, self.store.get(key));
            }
            None => {
                self.store.remove(key);
                ctx.event(key, None);
            }
        }
    }

    /// Lock expiry: drops waiters whose wait passed and, when the lease passed
    /// and the version matches, releases the lock to the next waiter.
    fn expire_lock(&mut self, ctx: &mut Ctx, key: &[u8], version_ok: bool) -> bool {
        let now = ctx.now_ms;
        let mut timed_out = Vec::new();
        let lease_due = self
            .store
            .update(key, |n| {
                let NodeKind::Lock(l) = &mut n.kind else {
                    return false;
                };
                l.waiters.retain(|w| {
                    let keep = w.wait_deadline_ms > now;
                    if !keep {
                        timed_out.push(w.client_id);
                    }
                    keep
                });
                l.holder.lease_deadline_ms <= now
            })
            .unwrap_or(false);
        let changed = !timed_out.is_empty();
        for client_id in timed_out {
            ctx.notifications.push(LockNotification {
                client_id,
                key: Bytes::copy_from_slice(key),
                kind: LockNotificationKind::WaitTimedOut,
            });
        }
        if version_ok && lease_due {
            tracing::debug!(index = ctx.index, key = %show(key), "kv lock lease expired");
            self.release(ctx, key);
            return true;
        }
        changed
    }

    fn update_lease(
        &mut self,
        ctx: &mut Ctx,
        key: &[u8],
        lease_ms: u64,
    ) -> Result<Outcome, KvError> {
        self.require_client(ctx, "updateLease")?;
        self.check_key(key)?;
        self.check_ms("lease", lease_ms, false)?;
        let lock = self.lock_of(key)?;
        if lock.holder.client_id != ctx.client {
            return Err(KvError::NotOwner(format!(
                "lock {} is held by client {}",
                show(key),
                lock.holder.client_id
            )));
        }
        let lease_deadline_ms = deadline(ctx.now_ms, lease_ms);
        let index = ctx.index;
        self.store.update(key, |n| {
            if let NodeKind::Lock(l) = &mut n.kind {
                l.holder.lease_deadline_ms = lease_deadline_ms;
                n.expire_version = index;
            }
        });
        Ok(Outcome::Deadline {
            deadline_ms: lease_deadline_ms,
        })
    }

    // ----- expiry scheduling (leader side) -----

    /// Nodes whose deadline is at or before `now_ms` (the leader's wall clock),
    /// earliest first, at most `max`. The leader proposes
    /// `Op::Expire { key, expected_version }` for each; proposing the same
    /// candidate twice is harmless (the second apply is a no-op).
    /// Cost: O(log n + max).
    pub fn expired_candidates(&self, now_ms: u64, max: usize) -> Vec<ExpireCandidate> {
        let mut out: Vec<ExpireCandidate> = Vec::new();
        for (d, key) in self.store.due(now_ms) {
            if out.len() >= max {
                break;
            }
            if let Some(n) = self.store.get(key) {
                out.push(ExpireCandidate {
                    key: key.clone(),
                    expected_version: n.expire_version,
                    deadline_ms: d,
                });
            }
        }
        out
    }

    /// The earliest deadline in state (leader wall-clock ms), for arming a timer.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.store.next_deadline()
    }

    // ----- reads -----

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

    // ----- watch history -----

    /// Watch events with raft index above `after_index`, in order, at most about
    /// `limit` (an index's events are never split). Fails with
    /// `HISTORY_COMPACTED` when some of those events are no longer kept: the
    /// watcher must re-read and resume from the read's index.
    pub fn events_after(&self, after_index: u64, limit: usize) -> Result<Vec<WatchEvent>, KvError> {
        self.history.events_after(after_index, limit)
    }

    /// The lowest index a watcher can resume after without `HISTORY_COMPACTED`.
    pub fn history_floor(&self) -> u64 {
        self.history.floor()
    }
}

/// True when `key` is `dir` itself or inside it (used by watch routing).
pub fn is_under(key: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || key == dir
        || (key.len() > dir.len() && key.starts_with(dir) && key[dir.len()] == SEPARATOR)
}
