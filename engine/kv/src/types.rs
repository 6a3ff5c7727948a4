//! The plain Rust types of commands, results, reads, watch events and lock
//! notifications. Payloads are `Bytes`: cloning one is a reference-count bump.

use bytes::Bytes;

use crate::error::KvError;

/// Identifies a client session. 0 means "no session": the command is not
/// deduplicated (used for leader-proposed `Expire` commands).
pub type ClientId = u64;

/// A write command as stored in the raft log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client session that sent the command; 0 for none.
    pub client_id: ClientId,
    /// The client's sequence number of this command (unique per client, from 1).
    pub seq: u64,
    /// The client has received the results of all its sequence numbers below this
    /// one; the state machine forgets those results.
    pub acked_below: u64,
    /// The leader's wall-clock time in milliseconds when it proposed the command.
    /// This is the only clock the state machine sees.
    pub leader_time_ms: u64,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// A command outside any session (no deduplication), e.g. for tests or for the
    /// leader's `Expire` proposals.
    pub fn unsessioned(leader_time_ms: u64, op: Op) -> Command {
        Command {
            client_id: 0,
            seq: 0,
            acked_below: 0,
            leader_time_ms,
            op,
        }
    }
}

/// One write operation. See docs/kv.md for the exact semantics and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite a value; the parent directory must exist.
    Put { key: Bytes, value: Bytes },
    /// Remove a value, an empty directory, or (owner only) a temporary node.
    Remove { key: Bytes },
    /// Create a directory; succeeds without change if it already exists.
    Mkdir { key: Bytes },
    /// Several puts in one log entry; one result per entry, in order.
    BatchPut { entries: Vec<(Bytes, Bytes)> },
    /// Several removes in one log entry; one result per key, in order.
    BatchRemove { keys: Vec<Bytes> },
    /// Set `new_value` if the current value equals `expected`. An empty
    /// `expected` means "must be absent"; an empty `new_value` means "delete".
    CompareAndSet {
        key: Bytes,
        expected: Bytes,
        new_value: Bytes,
    },
    /// Create or update a temporary value owned by the sending client.
    PutTemp {
        key: Bytes,
        value: Bytes,
        ttl_ms: u64,
    },
    /// Create (or re-arm) a temporary directory whose whole subtree expires together.
    MakeTempDir { key: Bytes, ttl_ms: u64 },
    /// Re-arm a temporary node's TTL from this command's time (owner only).
    UpdateTtl { key: Bytes, ttl_ms: u64 },
    /// Acquire the lock at `key`, or queue for it up to `wait_timeout_ms`.
    TryLock {
        key: Bytes,
        lease_ms: u64,
        wait_timeout_ms: u64,
    },
    /// Release the lock (holder) or leave its queue (waiter).
    Unlock { key: Bytes },
    /// Extend the holder's lease to `lease_ms` from this command's time.
    UpdateLease { key: Bytes, lease_ms: u64 },
    /// Leader-proposed expiry of a temporary node, lock lease or lock waiters.
    /// A no-op unless the node's expire version is still `expected_version`.
    Expire { key: Bytes, expected_version: u64 },
}

impl Op {
    /// The stable name of the operation, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Put { .. } => "put",
            Op::Remove { .. } => "remove",
            Op::Mkdir { .. } => "mkdir",
            Op::BatchPut { .. } => "batch_put",
            Op::BatchRemove { .. } => "batch_remove",
            Op::CompareAndSet { .. } => "compare_and_set",
            Op::PutTemp { .. } => "put_temp",
            Op::MakeTempDir { .. } => "make_temp_dir",
            Op::UpdateTtl { .. } => "update_ttl",
            Op::TryLock { .. } => "try_lock",
            Op::Unlock { .. } => "unlock",
            Op::UpdateLease { .. } => "update_lease",
            Op::Expire { .. } => "expire",
        }
    }
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// remove, compareAndSet: the change was made.
    Done,
    /// put: `created` is false when an existing value was overwritten.
    Put { created: bool },
    /// mkdir: `created` is false when the directory already existed.
    Mkdir { created: bool },
    /// batchPut / batchRemove: one result per key, in request order.
    Batch(Vec<Result<(), KvError>>),
    /// putTemp, makeTempDir, updateTtl, updateLease: the new absolute deadline
    /// (leader wall-clock milliseconds).
    Deadline { deadline_ms: u64 },
    /// tryLock.
    Lock(LockOutcome),
    /// Expire: whether anything expired (false: the proposal was stale).
    Expire { expired: bool },
}

/// The answer to a tryLock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutcome {
    /// The caller holds the lock. `token` is the raft index of the grant: it is
    /// larger for every new holder, and unchanged when a holder re-locks.
    Acquired { token: u64, lease_deadline_ms: u64 },
    /// The caller waits at `position` (0 = next) until its wait deadline; a
    /// [`LockNotification`] tells it the outcome.
    Queued {
        position: u32,
        wait_deadline_ms: u64,
    },
    /// Held by `holder` and the caller asked not to wait.
    NotAcquired { holder: ClientId },
}

/// The result of one applied write, as returned to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The raft index the result reflects (the index the command was first
    /// applied at, also when a retry is answered from the session table).
    pub index: u64,
    /// The outcome or the error; an error changed nothing.
    pub outcome: Result<Outcome, KvError>,
}

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// No node (watch events of a removal; reads of a missing key).
    Absent,
    /// A value node.
    Value,
    /// A directory.
    Dir,
    /// A lock node.
    Lock,
}

/// A change to one key, produced by an applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The raft index of the write.
    pub index: u64,
    /// The key that changed.
    pub key: Bytes,
    /// Its state after the write.
    pub state: NodeState,
    /// Its value after the write (empty unless `state` is `Value`).
    pub value: Bytes,
}

/// Why a lock notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockNotificationKind {
    /// The waiter now holds the lock.
    Acquired { token: u64, lease_deadline_ms: u64 },
    /// The waiter's wait timeout passed; it is no longer queued.
    WaitTimedOut,
}

/// A push the server sends to a client because of an applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockNotification {
    /// The client to tell.
    pub client_id: ClientId,
    /// The lock's key.
    pub key: Bytes,
    /// What happened.
    pub kind: LockNotificationKind,
}

/// Everything one `apply` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyResult {
    /// The result for the client that sent the command.
    pub result: WriteResult,
    /// Changes to route to watchers, in order. Empty for a failed or deduplicated
    /// command.
    pub events: Vec<WatchEvent>,
    /// Lock pushes to send.
    pub notifications: Vec<LockNotification>,
    /// True when the result was answered from the session table (a retry).
    pub deduplicated: bool,
}

/// A node as seen by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's key.
    pub key: Bytes,
    /// Value, directory or lock.
    pub state: NodeState,
    /// The value (empty for directories and locks).
    pub value: Bytes,
    /// Raft index and leader time of the node's creation.
    pub create_index: u64,
    /// Leader wall-clock milliseconds at creation.
    pub create_time_ms: u64,
    /// Raft index of the last change to the node.
    pub update_index: u64,
    /// Leader wall-clock milliseconds of the last change.
    pub update_time_ms: u64,
    /// For temporary nodes: the owner and the absolute expiry deadline.
    pub ttl: Option<TtlView>,
}

/// The TTL of a temporary node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlView {
    /// The client that owns the node.
    pub owner: ClientId,
    /// Absolute leader wall-clock deadline in milliseconds.
    pub deadline_ms: u64,
}

/// The state of a lock, for `isHeldByCurrentClient` and `leaseRestMillis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockView {
    /// The holder, its fencing token and absolute lease deadline, if held.
    pub holder: Option<(ClientId, u64, u64)>,
    /// How many clients wait.
    pub waiters: u32,
}

/// A read's data with the applied index it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult<T> {
    /// The state machine's applied index at the time of the read.
    pub index: u64,
    /// The data.
    pub data: T,
}

/// A leader's expiry proposal: propose `Op::Expire { key, expected_version }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireCandidate {
    /// The node whose deadline passed.
    pub key: Bytes,
    /// The node's expire version now; a later re-arm makes the proposal a no-op.
    pub expected_version: u64,
    /// The deadline that passed (leader wall-clock milliseconds).
    pub deadline_ms: u64,
}
