//! The DtKV state machine: applies write commands at raft indexes and answers
//! reads. Pure and deterministic: no IO, clocks or threads; the only time it
//! knows is the leader time carried by each command.

mod checks;
mod lock;
mod read;
mod tree;
mod ttl;
mod watch;

use bytes::Bytes;

use crate::error::KvError;
use crate::history::EventHistory;
use crate::limits::KvLimits;
use crate::session::{Check, Sessions};
use crate::store::{Node, NodeKind, Store};
use crate::types::{
    ApplyResult, ClientId, Command, LockNotification, NodeState, Op, Outcome, WatchEvent,
    WriteResult,
};

pub use read::{DEFAULT_LIST_PAGE, KeyRead, ListPage, MAX_LIST_PAGE, ReadRequest, ReadResponse};
pub use watch::is_under;

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

    /// Lock nodes stored (each has a holder); O(1), a maintained count.
    pub fn lock_count(&self) -> u64 {
        self.store.census().locks
    }

    /// Clients queued on locks; O(1), a maintained count.
    pub fn lock_waiter_count(&self) -> u64 {
        self.store.census().lock_waiters
    }

    /// Temporary nodes (with a TTL) stored; O(1), a maintained count.
    pub fn temp_node_count(&self) -> u64 {
        self.store.census().temp
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
}
