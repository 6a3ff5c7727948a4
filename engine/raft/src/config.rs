//! Node configuration.

use crate::error::InitError;
use crate::types::NodeId;

/// Planted bugs for proving that the simulator detects safety violations. Only
/// compiled with the `mutations` feature; never enable it in production.
#[cfg(feature = "mutations")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutation {
    /// Correct behaviour.
    #[default]
    None,
    /// Commit an entry of a previous term once a quorum stores it (the bug of
    /// figure 8 in the Raft paper).
    CommitPreviousTerm,
    /// Grant votes without checking that the candidate's log is up to date.
    VoteWithoutLogCheck,
    /// Serve lease reads without a quorum-acknowledged lease.
    LeaseWithoutQuorum,
    /// Count the leader's own unpersisted entries toward the commit quorum.
    CountUnpersistedSelf,
}

/// Configuration of one node of one group. Durations are milliseconds of the
/// clock the caller passes to [`crate::RawNode::tick`].
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The raft group this node belongs to; only named in log lines.
    pub group: u32,
    /// Base election timeout. Each election waits a random time in
    /// `[elect_timeout_ms, 2 * elect_timeout_ms)`. Default 3000 (see docs/raft.md).
    pub elect_timeout_ms: u64,
    /// Interval between leader heartbeats. Default 300.
    pub heartbeat_interval_ms: u64,
    /// Subtracted from the lease to absorb clock-rate drift between nodes.
    /// Default 300 (10 % of the election timeout).
    pub lease_drift_margin_ms: u64,
    /// Run a pre-vote round before incrementing the term. Default true.
    pub pre_vote: bool,
    /// Leader steps down when it has not heard from a quorum for an election
    /// timeout, and followers ignore vote requests while they hear from a leader.
    /// Default true (lease reads require it).
    pub check_quorum: bool,
    /// Allow lease reads (otherwise every read uses ReadIndex). Default true.
    pub lease_read: bool,
    /// Maximum append messages in flight to one follower. Default 64.
    pub max_inflight_msgs: usize,
    /// Maximum entry bytes in flight to one follower. Default 64 MiB.
    pub max_inflight_bytes: u64,
    /// Maximum entries in one append message. Default 4096.
    pub max_append_entries: usize,
    /// Maximum entry bytes in one append message. Default 1 MiB.
    pub max_append_bytes: u64,
    /// Maximum payload size of one proposal. Default 16 MiB.
    pub max_entry_bytes: u64,
    /// Maximum committed entries handed out in one ready. Default 8192.
    pub max_apply_entries: usize,
    /// Persisted entries kept in memory for replication before being evicted to
    /// storage. Default 65536.
    pub max_cached_entries: usize,
    /// Snapshot chunk size. Default 1 MiB.
    pub snapshot_chunk_bytes: u64,
    /// Proposals held while a leader transfer runs. Default 10000.
    pub max_held_proposals: usize,
    /// Index the state machine has applied at start-up (its snapshot index).
    pub applied: u64,
    /// Seed of the election-timeout randomness.
    pub seed: u64,
    /// Planted bug (tests only).
    #[cfg(feature = "mutations")]
    pub mutation: Mutation,
}

impl Config {
    /// Defaults for node `id`.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            group: 0,
            elect_timeout_ms: 3000,
            heartbeat_interval_ms: 300,
            lease_drift_margin_ms: 300,
            pre_vote: true,
            check_quorum: true,
            lease_read: true,
            max_inflight_msgs: 64,
            max_inflight_bytes: 64 << 20,
            max_append_entries: 4096,
            max_append_bytes: 1 << 20,
            max_entry_bytes: 16 << 20,
            max_apply_entries: 8192,
            max_cached_entries: 65536,
            snapshot_chunk_bytes: 1 << 20,
            max_held_proposals: 10_000,
            applied: 0,
            seed: id,
            #[cfg(feature = "mutations")]
            mutation: Mutation::None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), InitError> {
        if self.id == 0 {
            return Err(InitError::Config("node id 0 is reserved"));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.elect_timeout_ms {
            return Err(InitError::Config(
                "heartbeat_interval_ms must be positive and below elect_timeout_ms",
            ));
        }
        if self.lease_drift_margin_ms >= self.elect_timeout_ms {
            return Err(InitError::Config(
                "lease_drift_margin_ms must be below elect_timeout_ms",
            ));
        }
        if self.max_inflight_msgs == 0
            || self.max_append_entries == 0
            || self.max_apply_entries == 0
            || self.snapshot_chunk_bytes == 0
        {
            return Err(InitError::Config("limits must be positive"));
        }
        Ok(())
    }

    #[cfg(feature = "mutations")]
    pub(crate) fn mutated(&self, m: Mutation) -> bool {
        self.mutation == m
    }

    #[cfg(not(feature = "mutations"))]
    #[inline(always)]
    pub(crate) fn mutated(&self, _m: MutationStub) -> bool {
        false
    }
}

/// Stand-in so call sites compile without the feature.
#[cfg(not(feature = "mutations"))]
#[derive(Clone, Copy)]
pub(crate) enum MutationStub {
    CommitPreviousTerm,
    VoteWithoutLogCheck,
    LeaseWithoutQuorum,
    CountUnpersistedSelf,
}

#[cfg(not(feature = "mutations"))]
pub(crate) use MutationStub as Mutation;
