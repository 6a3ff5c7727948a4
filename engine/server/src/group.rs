//! One raft group on one node: its raft core, log store and DtKV state machine,
//! driven by one task.
//!
//! Everything that touches the group's state happens on that task; handlers on
//! connection tasks only send it [`GroupMsg`]s, and readers see the
//! [`GroupStatus`] copy it publishes. Per loop turn the task drains its inbox
//! (many proposals become one raft batch and one log write), runs raft, hands
//! entries to the store (the store's writer and syncer threads turn them into
//! one write and one fdatasync), sends messages that need no persistence at
//! once and the others when the store reports them durable, applies committed
//! entries and answers the clients that wait for them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{KvError, KvStateMachine, Op, ReadRequest, WriteResult};
use dongting_net::proto::LeaderHint;
use dongting_net::{Responder, Status};
use dongting_raft::{
    AdminOutcome, EntryKind, HardState, LogId, Message, NodeId, Proposed, RawNode, Role,
};
use dongting_store::{SnapshotPolicy, StoreError};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::clock::{mono_ms, wall_ms};
use crate::inbox::{AdminOp, AdminReply, GroupMsg};
use crate::proto::{AdminResponse, ReadMode};
use crate::shared::NodeShared;
use crate::status::{GroupStatus, JointStatus, Role as StatusRole};
use crate::storage::{self, GroupStorage};

/// Most inbox messages handled in one loop turn before raft runs.
const MAX_MSGS_PER_TURN: usize = 4096;
/// Most committed entries applied in one raft ready; new requests are taken
/// in between (see [`GroupTask::turn`]).
pub(crate) const APPLY_CHUNK: usize = 256;
/// Turns in a row that skip the select while committed entries wait.
const MAX_TURNS_WITHOUT_SELECT: u32 = 64;
/// Expiry proposals a leader makes per tick.
const MAX_EXPIRES_PER_TICK: usize = 256;
/// Store operations queued behind a backpressured log before writes are refused.
const MAX_IO_BACKLOG: usize = 1024;
/// Ticks between sweeps of closed connections out of the lock push registry.
const PRUNE_EVERY_TICKS: u32 = 1024;

/// A store operation in the order raft asked for it.
pub(crate) enum IoOp {
    Truncate(u64),
    Append(Vec<dongting_store::LogRecord>),
    SaveHardState(dongting_store::HardState),
}

/// Messages and progress reports that wait until the store made their
/// entries and hard state durable.
pub(crate) struct PersistWait {
    point: Option<LogId>,
    hs: Option<HardState>,
    /// Term and vote that must be durable first (when they changed).
    need_hs: Option<(u64, u64)>,
    msgs: Vec<Message>,
    /// When the wait was queued; a wait far older than any sync is reported.
    since: Instant,
    reported: bool,
}

/// A persistence wait older than this is logged once as stuck.
const STUCK_PERSIST_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Stopping {
    deadline: Instant,
    delete: bool,
    reply: oneshot::Sender<()>,
}

/// Everything the group task owns.
/// Hasher of log indexes: one multiply, spread over the high bits that
/// hashbrown uses for its tags (the default SipHash costs several times more).
#[derive(Default)]
pub(crate) struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A write proposed by this node: (term, size, responder, decoded command).
pub(crate) type PendingWrite = (u64, u64, Responder, Option<dongting_kv::Command>);

pub(crate) struct GroupTask {
    pub(crate) group_id: u32,
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) raft: RawNode<GroupStorage>,
    pub(crate) sm: KvStateMachine,
    pub(crate) rx: mpsc::Receiver<GroupMsg>,
    pub(crate) status_tx: watch::Sender<GroupStatus>,
    pub(crate) notify: Arc<Notify>,
    pub(crate) sync_force: bool,
    pub(crate) policy: SnapshotPolicy,
    pub(crate) delete_logs: bool,
    pub(crate) max_pending_writes: usize,
    /// Most committed entries a node may lack when it is made a voter
    /// (`max_replicate_items`: one replication window).
    pub(crate) max_promote_behind: u64,
    pub(crate) tick_ms: u64,
    pub(crate) last_snapshot_index: u64,
    /// Leader changes and vote rounds seen (published for metrics).
    pub(crate) leader_changes: u64,
    pub(crate) elections: u64,
    /// Apply lag at the last tick, and when it was last warned about.
    pub(crate) apply_lag_seen: u64,
    pub(crate) apply_lag_warned_at: Option<Instant>,
    pub(crate) dir: std::path::PathBuf,
    // Runtime state.
    /// Writes proposed and not yet answered: index -> (term, bytes, responder).
    /// Writes proposed here by log index: (term, size, responder, the decoded
    /// command when this node proposed it in that term and slot, so its apply
    /// needs no second decode).
    pub(crate) pending_writes: HashMap<u64, PendingWrite, BuildHasherDefault<IndexHasher>>,
    /// Writes held during a leader transfer: id -> (bytes, responder).
    pub(crate) held: HashMap<u64, (u64, Responder)>,
    pub(crate) pending_write_bytes: u64,
    pub(crate) max_pending_write_bytes: u64,
    pub(crate) reads: HashMap<u64, Vec<(ReadRequest, Responder)>>,
    pub(crate) waiting_reads: Vec<(u64, Vec<(ReadRequest, Responder)>)>,
    pub(crate) batch_reads: Vec<(ReadRequest, Responder)>,
    pub(crate) next_ctx: u64,
    pub(crate) io_backlog: VecDeque<IoOp>,
    pub(crate) persist_waits: VecDeque<PersistWait>,
    pub(crate) saved_term_vote: (u64, u64),
    pub(crate) last_hs: HardState,
    /// The last committed configuration raft emitted (persisted with the hard state).
    pub(crate) committed_membership: dongting_raft::Membership,
    pub(crate) last_error: String,
    pub(crate) failed: bool,
    pub(crate) stopping: Option<Stopping>,
    pub(crate) last_snapshot_at: Instant,
    /// Index of the last expiry proposal; no new ones until it is applied.
    pub(crate) expire_applied_at: u64,
    /// The snapshot being written on a blocking thread, if any.
    pub(crate) snapshot_job: Option<SnapshotJob>,
    /// Admin requests waiting for the running snapshot.
    pub(crate) snapshot_waiters: Vec<oneshot::Sender<AdminReply>>,
    pub(crate) snap_done_tx: mpsc::UnboundedSender<Result<(), String>>,
    pub(crate) snap_done_rx: mpsc::UnboundedReceiver<Result<(), String>>,
    /// The group's watches on this node.
    pub(crate) watches: crate::watch::WatchHub,
    /// Connections of clients queued for a lock through this node.
    pub(crate) lock_pushers: crate::locks::LockPushers,
    /// Ticks since closed connections were last forgotten.
    pub(crate) ticks_since_prune: u32,
}

/// A snapshot being written off the group task.
pub(crate) struct SnapshotJob {
    meta: dongting_raft::SnapshotMeta,
    started: Instant,
}

/// Apply lag (committed, not applied entries) from which a growing lag is
/// logged at WARN.
const APPLY_LAG_WARN: u64 = 10_000;
/// Least time between two apply-lag warnings of one group.
const APPLY_LAG_WARN_EVERY: Duration = Duration::from_secs(10);

impl GroupTask {
    /// Runs the group until it is stopped or its inbox closes.
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(Duration::from_millis(self.tick_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let notify = self.notify.clone();
        let mut last_publish = Instant::now();
        let mut published = self.role_key();
        let mut more = false;
        let mut yields = 0u32;
        loop {
            // Every so often a busy group still waits in the select, so its
            // ticks (elections, leases, expiries) are never starved.
            yields = if more { yields + 1 } else { 0 };
            if more && !yields.is_multiple_of(MAX_TURNS_WITHOUT_SELECT) {
                // A large commit is applied a chunk at a time. The answers
                // wake their connections' writers on this worker; they run
                // only once this task yields, and the requests the clients
                // send back then join the next turn. Without the yield a
                // commit's answers leave together after the last apply, and
                // the clients, the log and this task take turns instead of
                // working side by side.
                tokio::task::yield_now().await;
                self.drain_inbox();
            } else {
                tokio::select! {
                    m = self.rx.recv() => {
                        let Some(m) = m else { break };
                        self.handle(m);
                        self.drain_inbox();
                    }
                    _ = ticker.tick() => {
                        self.raft.tick(mono_ms());
                        if let Err(e) = self.raft.store_mut().log_mut().tick(Instant::now()) {
                            self.fail(format!("log maintenance failed: {e}"));
                        }
                        self.maybe_snapshot(false);
                        self.propose_expiries();
                        self.report_stuck_persist_wait();
                        self.warn_apply_lag();
                        self.watches.tick(&self.sm);
                        self.ticks_since_prune += 1;
                        if self.ticks_since_prune >= PRUNE_EVERY_TICKS {
                            self.ticks_since_prune = 0;
                            self.lock_pushers.prune();
                        }
                    }
                    _ = notify.notified() => {}
                    Some(done) = self.snap_done_rx.recv() => self.finish_snapshot(done),
                }
            }
            self.start_reads();
            more = self.turn();
            // Every tick, and at once when the role, term, leader or readiness
            // changed: a caller that just saw a write succeed must not read an
            // old role.
            let seen = self.role_key();
            if seen != published {
                self.log_role_change(published, seen);
            }
            if seen != published || last_publish.elapsed() >= Duration::from_millis(self.tick_ms) {
                self.publish();
                published = seen;
                last_publish = Instant::now();
            }
            if let Some(s) = &self.stopping
                && (self.pending_writes.is_empty() || Instant::now() >= s.deadline)
            {
                break;
            }
            if self.failed && self.stopping.is_none() && self.rx.is_closed() {
                break;
            }
        }
        self.close().await;
    }

    /// Runs raft until it has no more work and the store has nothing durable
    /// to report, or until it applied a chunk of committed entries and has
    /// more: then returns true, and the caller yields before the next turn.
    fn turn(&mut self) -> bool {
        for _ in 0..64 {
            if self.failed {
                return false;
            }
            let mut progressed = false;
            let mut applied = 0;
            if self.raft.has_ready() {
                applied = self.process_ready();
                progressed = true;
            }
            self.flush_io();
            if self.check_persisted() {
                progressed = true;
            }
            if !progressed {
                return false;
            }
            if applied > 0 && self.raft.has_ready() {
                return true;
            }
        }
        self.raft.has_ready()
    }

    /// Handles what waits in the inbox, at most [`MAX_MSGS_PER_TURN`] messages.
    fn drain_inbox(&mut self) {
        for _ in 0..MAX_MSGS_PER_TURN {
            match self.rx.try_recv() {
                Ok(m) => self.handle(m),
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, m: GroupMsg) {
        match m {
            GroupMsg::Write {
                body,
                cmd,
                responder,
            } => self.propose(body, cmd, responder),
            GroupMsg::Read {
                req,
                mode,
                responder,
            } => self.read(req, mode, responder),
            GroupMsg::Watch {
                conn,
                req,
                responder,
            } => {
                if let Some(responder) = self.refuse_if_unavailable(responder) {
                    match self.watches.register(&self.sm, conn, req) {
                        Ok(r) => responder.ok(&r.encode()),
                        Err((status, msg)) => responder.error(status, &msg),
                    }
                }
            }
            GroupMsg::Unwatch {
                conn_id,
                watch_id,
                responder,
            } => {
                self.watches.unwatch(conn_id, watch_id);
                responder.ok(&[]);
            }
            GroupMsg::Raft(msgs) => {
                if !self.failed {
                    for m in msgs {
                        self.raft.step(m);
                    }
                }
            }
            GroupMsg::Admin {
                op: AdminOp::Snapshot,
                reply,
            } => {
                if self.failed {
                    let _ = reply.send(Err((Status::RAFT_GROUP_STOPPED, self.last_error.clone())));
                    return;
                }
                match self.start_snapshot() {
                    Ok(true) => self.snapshot_waiters.push(reply),
                    Ok(false) => {
                        let index = self.last_snapshot_index;
                        let _ = reply.send(Ok(AdminResponse {
                            index,
                            message: format!("snapshot at index {index} is current"),
                        }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err((Status::SYS_ERROR, e)));
                    }
                }
            }
            GroupMsg::Admin { op, reply } => {
                let r = self.admin(op);
                let _ = reply.send(r);
            }
            GroupMsg::Publish(reply) => {
                self.publish();
                let _ = reply.send(());
            }
            GroupMsg::Stop {
                grace,
                delete,
                reply,
            } => {
                info!(group = self.group_id, "group stopping");
                self.stopping = Some(Stopping {
                    deadline: Instant::now() + grace,
                    delete,
                    reply,
                });
            }
        }
    }

    fn leader_hint(&self) -> Option<LeaderHint> {
        let leader = self.raft.leader();
        if leader == 0 {
            return None;
        }
        self.shared
            .service_endpoint(leader as u32)
            .map(|(host, port)| LeaderHint {
                node_id: leader as i32,
                host,
                port,
            })
    }

    fn not_leader(&self, responder: Responder) {
        let leader = self.raft.leader();
        let msg = if leader == 0 {
            format!(
                "node {} is not the leader of group {}; no leader known",
                self.shared.node_id, self.group_id
            )
        } else {
            format!(
                "node {} is not the leader of group {}; the leader is node {leader}",
                self.shared.node_id, self.group_id
            )
        };
        responder.not_leader(&msg, self.leader_hint().as_ref());
    }

    fn refuse_if_unavailable(&self, responder: Responder) -> Option<Responder> {
        if self.failed {
            responder.error(
                Status::RAFT_GROUP_STOPPED,
                &format!("group {} stopped: {}", self.group_id, self.last_error),
            );
            return None;
        }
        if self.stopping.is_some() {
            responder.error(Status::STOPPING, "the group is shutting down");
            return None;
        }
        Some(responder)
    }

    fn propose(&mut self, body: Bytes, cmd: dongting_kv::Command, responder: Responder) {
        let Some(responder) = self.refuse_if_unavailable(responder) else {
            return;
        };
        if self.raft.role() != Role::Leader {
            self.not_leader(responder);
            return;
        }
        if self.pending_writes.len() + self.held.len() >= self.max_pending_writes
            || self.pending_write_bytes >= self.max_pending_write_bytes
            || self.io_backlog.len() >= MAX_IO_BACKLOG
        {
            responder.error(
                Status::FLOW_CONTROL,
                "too many writes pending in this group; retry later",
            );
            return;
        }
        if let Err(e) = precheck(&cmd.op, self.sm.limits()) {
            // Refused before it reaches the log: nothing changes.
            let r = WriteResult {
                index: 0,
                outcome: Err(e),
            };
            dongting_kv::with_write_result(&r, |d| responder.ok(d));
            return;
        }
        // The leader's clock goes into the client's encoding in place; the
        // stamped command is kept to apply without decoding the entry again.
        let (data, cmd) = dongting_kv::stamp_leader_time(&body, &cmd, wall_ms());
        let size = body.len() as u64;
        match self.raft.propose(data) {
            Ok(Proposed::Appended(id))
                if matches!(cmd.op, Op::Put { .. })
                    && crate::failpoints::active(crate::failpoints::Failpoint::AckBeforeCommit) =>
            {
                // Planted bug: answered before a quorum stores the entry; the
                // entry applies later without a waiting responder.
                let r = WriteResult {
                    index: id.index,
                    outcome: Ok(dongting_kv::Outcome::Put { created: false }),
                };
                dongting_kv::with_write_result(&r, |d| responder.ok(d));
            }
            Ok(Proposed::Appended(id)) => {
                self.pending_write_bytes += size;
                self.pending_writes
                    .insert(id.index, (id.term, size, responder, Some(cmd)));
            }
            Ok(Proposed::Held(id)) => {
                self.pending_write_bytes += size;
                self.held.insert(id, (size, responder));
            }
            Err(dongting_raft::ProposeError::NotLeader { .. }) => self.not_leader(responder),
            Err(e) => responder.error(Status::CLIENT_ERROR, &e.to_string()),
        }
    }

    fn read(&mut self, req: ReadRequest, mode: ReadMode, responder: Responder) {
        let Some(responder) = self.refuse_if_unavailable(responder) else {
            return;
        };
        match mode {
            ReadMode::Stale => self.serve(&req, responder),
            _ if self.raft.role() == Role::Leader
                && crate::failpoints::active(crate::failpoints::Failpoint::StaleLeaderRead) =>
            {
                self.serve(&req, responder)
            }
            ReadMode::Linearizable if self.raft.role() != Role::Leader => {
                self.not_leader(responder)
            }
            _ => self.batch_reads.push((req, responder)),
        }
    }

    /// On the leader: proposes the expiry of temporary nodes, lock leases and
    /// lock waiters whose deadline passed (DtKV only knows the time carried by
    /// commands). One batch at a time: the next waits until the previous one
    /// is applied.
    fn propose_expiries(&mut self) {
        if self.raft.role() != Role::Leader
            || self.failed
            || self.sm.applied_index() < self.expire_applied_at
        {
            return;
        }
        let mut now = wall_ms();
        if crate::failpoints::active(crate::failpoints::Failpoint::ExpireEarly) {
            now += crate::failpoints::EXPIRE_EARLY_MS;
        }
        if self.sm.next_deadline_ms().is_none_or(|d| d > now) {
            return;
        }
        for c in self.sm.expired_candidates(now, MAX_EXPIRES_PER_TICK) {
            let cmd = dongting_kv::Command::unsessioned(
                now,
                Op::Expire {
                    key: c.key,
                    expected_version: c.expected_version,
                },
            );
            match self.raft.propose(dongting_kv::encode_command(&cmd)) {
                Ok(Proposed::Appended(id)) => self.expire_applied_at = id.index,
                Ok(Proposed::Held(_)) | Err(_) => return,
            }
        }
    }

    /// Starts one ReadIndex round for every read that arrived this turn.
    fn start_reads(&mut self) {
        if self.batch_reads.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch_reads);
        self.next_ctx += 1;
        let ctx = self.next_ctx;
        match self.raft.read_index(ctx) {
            Ok(()) => {
                self.reads.insert(ctx, batch);
            }
            Err(_) => {
                for (_, r) in batch {
                    self.not_leader(r);
                }
            }
        }
    }

    fn serve(&self, req: &ReadRequest, responder: Responder) {
        let r = self.sm.read(req);
        dongting_kv::with_read_result(req, &r, |d| responder.ok(d));
    }

    fn admin(&mut self, op: AdminOp) -> AdminReply {
        if self.failed {
            return Err((Status::RAFT_GROUP_STOPPED, self.last_error.clone()));
        }
        let not_leader = |leader: NodeId| {
            (
                Status::NOT_RAFT_LEADER,
                if leader == 0 {
                    "this node is not the leader; no leader known".to_string()
                } else {
                    format!("this node is not the leader; the leader is node {leader}")
                },
            )
        };
        let outcome = |o: AdminOutcome, what: &str| match o {
            AdminOutcome::Appended(id) => AdminResponse {
                index: id.index,
                message: format!("{what} appended at index {}", id.index),
            },
            AdminOutcome::AlreadyPending(i) => AdminResponse {
                index: i,
                message: format!("{what} already pending at index {i}"),
            },
            AdminOutcome::AlreadyDone(i) => AdminResponse {
                index: i,
                message: format!("{what} already in effect (index {i})"),
            },
        };
        let map_err = |e: dongting_raft::AdminError| match e {
            dongting_raft::AdminError::NotLeader { leader } => not_leader(leader),
            other => (Status::CLIENT_ERROR, other.to_string()),
        };
        let ids = |v: &[u32]| v.iter().map(|&i| i as NodeId).collect::<Vec<_>>();
        match op {
            AdminOp::TransferLeader { target, timeout_ms } => {
                self.raft
                    .transfer_leader(target as NodeId, timeout_ms.max(1))
                    .map_err(map_err)?;
                Ok(AdminResponse {
                    index: 0,
                    message: format!("leader transfer to node {target} started"),
                })
            }
            AdminOp::Prepare { members, observers } => {
                for n in members.iter().chain(&observers) {
                    if self.shared.server_address(*n).is_none() {
                        return Err((
                            Status::CLIENT_ERROR,
                            format!("node {n} is not in the servers list"),
                        ));
                    }
                }
                if self.raft.role() == Role::Leader {
                    for n in &members {
                        self.check_ready_to_vote(*n)?;
                    }
                }
                let o = self
                    .raft
                    .prepare_membership(&ids(&members), &ids(&observers))
                    .map_err(map_err)?;
                Ok(outcome(o, "prepare"))
            }
            AdminOp::Commit { prepare_index } => {
                let o = self
                    .raft
                    .commit_membership(prepare_index)
                    .map_err(map_err)?;
                Ok(outcome(o, "commit"))
            }
            AdminOp::Abort => {
                let o = self.raft.abort_membership().map_err(map_err)?;
                Ok(outcome(o, "abort"))
            }
            AdminOp::Snapshot => Err((
                Status::SYS_ERROR,
                "snapshot is handled by the group loop".into(),
            )),
        }
    }

    /// Refuses to make `node` a voter unless the leader replicates to it (it
    /// is an observer), it answered within an election timeout and it lacks at
    /// most `max_promote_behind` committed entries: a voter without the log
    /// adds nothing to the quorum and, while it catches up, can cost one.
    fn check_ready_to_vote(&self, node: u32) -> Result<(), (Status, String)> {
        let id = node as NodeId;
        if self.raft.membership().is_voter(id) {
            return Ok(());
        }
        let g = self.group_id;
        let refuse = |why: String| Err((Status::CLIENT_ERROR, why));
        let Some(lag) = self.raft.peer_lag(id) else {
            return refuse(format!(
                "node {node} does not receive group {g}'s log: add it as an observer \
                 first (prepare with --observers {node}, then commit), let it catch up, \
                 then make it a member"
            ));
        };
        let elect_ms = self.shared.cfg.elect_timeout_ms;
        match lag.silent_ms {
            None => {
                return refuse(format!(
                    "node {node} has not answered the leader of group {g} yet; \
                     make it a member once it follows the log as an observer"
                ));
            }
            Some(ms) if ms > elect_ms => {
                return refuse(format!(
                    "node {node} has not answered the leader of group {g} for {ms} ms \
                     (election timeout {elect_ms} ms); make it a member once it is back"
                ));
            }
            Some(_) => {}
        }
        if lag.behind > self.max_promote_behind {
            return refuse(format!(
                "node {node} lacks {} committed entries of group {g} (at most {} for a \
                 new voter, max_replicate_items); retry once it has caught up",
                lag.behind, self.max_promote_behind
            ));
        }
        Ok(())
    }

    /// Handles one raft ready; returns how many committed entries it applied.
    fn process_ready(&mut self) -> usize {
        let mut rd = self.raft.ready();
        let applied = rd.committed_entries.len();
        self.send_messages(&rd.messages);
        if let Some(snap) = &rd.snapshot {
            // Older queued log writes are superseded by the snapshot; queued
            // hard-state saves (term, vote) must still happen.
            self.io_backlog
                .retain(|op| matches!(op, IoOp::SaveHardState(_)));
            // The log restarts after the snapshot: entries beyond it that
            // were waiting to be written never will be.
            self.supersede_waits(snap.meta.index + 1);
            let st = self.raft.store_mut();
            let r = storage::blocking(|| st.install_snapshot(snap));
            if let Err(e) = r {
                self.fail(format!(
                    "installing the snapshot at index {} failed: {e}",
                    snap.meta.index
                ));
                return 0;
            }
            let chunks = match storage::unframe_image(&snap.data) {
                Ok(c) => c,
                Err(e) => {
                    self.fail(format!("snapshot from the leader is damaged: {e}"));
                    return 0;
                }
            };
            let applied_before = self.sm.applied_index();
            if let Err(e) = self.sm.restore(chunks) {
                self.fail(format!("snapshot from the leader does not restore: {e}"));
                return 0;
            }
            self.watches.on_restore(applied_before);
            self.last_snapshot_index = snap.meta.index;
            info!(
                group = self.group_id,
                index = snap.meta.index,
                "snapshot installed from the leader"
            );
        }
        let point = rd.persist_point();
        if let Some(first) = rd.entries.first() {
            if first.index <= self.queued_last_index() {
                self.io_backlog.push_back(IoOp::Truncate(first.index));
                self.supersede_waits(first.index);
            }
            // Moved, not cloned: the ready's entries are not used again.
            self.io_backlog.push_back(IoOp::Append(
                std::mem::take(&mut rd.entries)
                    .into_iter()
                    .map(storage::into_record)
                    .collect(),
            ));
        }
        let mut need_hs = None;
        if let Some(hs) = rd.hard_state {
            self.last_hs = hs;
        }
        let term_vote_changed = (self.last_hs.term, self.last_hs.vote) != self.saved_term_vote;
        if term_vote_changed || rd.membership.is_some() {
            let hs = self.last_hs;
            // The committed configuration: the one in force may still hold an
            // uncommitted change that a new leader could truncate.
            if let Some(m) = &rd.membership {
                self.committed_membership = m.clone();
            }
            let membership = self.committed_membership.clone();
            self.io_backlog
                .push_back(IoOp::SaveHardState(dongting_store::HardState {
                    term: hs.term,
                    vote: hs.vote,
                    commit: hs.commit,
                    membership: membership.encode(),
                }));
            self.raft.store_mut().set_persisted_state(hs, membership);
            self.saved_term_vote = (hs.term, hs.vote);
            need_hs = Some((hs.term, hs.vote));
        }
        if point.is_some()
            || need_hs.is_some()
            || !rd.persisted_messages.is_empty()
            || rd.hard_state.is_some()
        {
            self.persist_waits.push_back(PersistWait {
                point,
                hs: rd.hard_state,
                need_hs,
                msgs: rd.persisted_messages,
                since: Instant::now(),
                reported: false,
            });
        }
        // Committed entries are durable locally already.
        let mut last_applied = None;
        for e in &rd.committed_entries {
            match e.kind {
                EntryKind::Normal => {
                    let pending = self.pending_writes.remove(&e.index);
                    // Same index and term: the entry is the command proposed here.
                    let r = match &pending {
                        Some((term, _, responder, Some(cmd))) if *term == e.term => {
                            if let Op::TryLock {
                                wait_timeout_ms, ..
                            } = cmd.op
                                && let Some(conn) = responder.conn()
                            {
                                // A waiting client hears of its lock on this
                                // connection: not idle while it may wait.
                                conn.keep_open_for(Duration::from_millis(wait_timeout_ms));
                                self.lock_pushers.register(cmd.client_id, conn);
                            }
                            self.sm.apply(e.index, cmd)
                        }
                        _ => self.sm.apply_bytes(e.index, &e.data),
                    };
                    self.watches.collect(r.events);
                    if !r.notifications.is_empty() {
                        self.lock_pushers
                            .push(self.group_id, e.index, &r.notifications);
                    }
                    if let Some((term, size, responder, _)) = pending {
                        self.pending_write_bytes -= size;
                        if term == e.term {
                            let mut result = r.result;
                            if crate::failpoints::active(
                                crate::failpoints::Failpoint::LockGrantWhileHeld,
                            ) && let Ok(dongting_kv::Outcome::Lock(
                                dongting_kv::LockOutcome::NotAcquired { .. },
                            )) = result.outcome
                            {
                                // Planted bug: a lock held by another client is
                                // reported granted (token: this entry's index).
                                result.outcome = Ok(dongting_kv::Outcome::Lock(
                                    dongting_kv::LockOutcome::Acquired {
                                        token: result.index,
                                        lease_deadline_ms: 0,
                                    },
                                ));
                            }
                            dongting_kv::with_write_result(&result, |d| responder.ok(d));
                        } else {
                            self.not_leader(responder);
                        }
                    }
                }
                _ => {
                    self.sm.advance(e.index);
                    if let Some((_, size, responder, _)) = self.pending_writes.remove(&e.index) {
                        self.pending_write_bytes -= size;
                        self.not_leader(responder);
                    }
                }
            }
            last_applied = Some(e.index);
        }
        self.watches.dispatch();
        if let Some(i) = last_applied {
            self.raft.on_applied(i);
        } else if let Some(s) = &rd.snapshot {
            self.raft.on_applied(s.meta.index);
        }
        for rs in rd.read_states {
            let Some(batch) = self.reads.remove(&rs.ctx) else {
                continue;
            };
            match rs.result {
                Ok(index) if index <= self.sm.applied_index() => {
                    for (req, r) in batch {
                        self.serve(&req, r);
                    }
                }
                Ok(index) => self.waiting_reads.push((index, batch)),
                Err(_) => {
                    for (_, r) in batch {
                        self.not_leader(r);
                    }
                }
            }
        }
        for hp in rd.held_proposals {
            let Some((size, responder)) = self.held.remove(&hp.id) else {
                continue;
            };
            match hp.result {
                Ok(id) => {
                    self.pending_writes
                        .insert(id.index, (id.term, size, responder, None));
                }
                Err(_) => {
                    self.pending_write_bytes -= size;
                    self.not_leader(responder);
                }
            }
        }
        if !self.waiting_reads.is_empty() {
            let applied = self.sm.applied_index();
            let mut i = 0;
            while i < self.waiting_reads.len() {
                if self.waiting_reads[i].0 <= applied {
                    let (_, batch) = self.waiting_reads.swap_remove(i);
                    for (req, r) in batch {
                        self.serve(&req, r);
                    }
                } else {
                    i += 1;
                }
            }
        }
        applied
    }

    fn send_messages(&self, msgs: &[Message]) {
        if msgs.is_empty() {
            return;
        }
        let mut by_peer: Vec<(NodeId, Vec<&Message>)> = Vec::new();
        for m in msgs {
            match by_peer.iter_mut().find(|(p, _)| *p == m.to) {
                Some((_, v)) => v.push(m),
                None => by_peer.push((m.to, vec![m])),
            }
        }
        for (peer, batch) in by_peer {
            let body = crate::wire::encode_batch(self.group_id, &batch);
            self.shared.send_to_peer(peer as u32, body);
        }
    }

    /// Last log index once every queued store operation is done.
    fn queued_last_index(&mut self) -> u64 {
        for op in self.io_backlog.iter().rev() {
            match op {
                IoOp::Append(recs) => {
                    if let Some(r) = recs.last() {
                        return r.index;
                    }
                }
                IoOp::Truncate(i) => return i.saturating_sub(1),
                IoOp::SaveHardState(_) => {}
            }
        }
        self.raft.store_mut().log_mut().last_index()
    }

    /// Hands queued store operations to the log until it pushes back.
    fn flush_io(&mut self) {
        while let Some(op) = self.io_backlog.front_mut() {
            let log = self.raft.store_mut().log_mut();
            let r = match op {
                IoOp::Truncate(i) => log.truncate_suffix(*i),
                IoOp::Append(recs) => log.append_owned(recs),
                IoOp::SaveHardState(hs) => log.save_hard_state(hs.clone()),
            };
            match r {
                Ok(()) => {
                    self.io_backlog.pop_front();
                }
                Err(StoreError::Backpressure { .. }) | Err(StoreError::DiskFull { .. }) => return,
                Err(e) => {
                    self.fail(format!("the log refused a write: {e}"));
                    return;
                }
            }
        }
    }

    /// The log is cut back to `from - 1`: waits for entries at or after `from`
    /// can no longer be met by those entries. Their messages (answers that
    /// acknowledge the entries now cut) are dropped, never sent: once a later
    /// entry at the same index is durable they would acknowledge something
    /// this node does not hold. Dropping is safe, as raft tolerates lost
    /// messages. What they depend on besides the log (the hard state) is
    /// still waited for, in order.
    fn supersede_waits(&mut self, from: u64) {
        for w in self.persist_waits.iter_mut() {
            if w.point.is_some_and(|p| p.index >= from) {
                w.point = None;
                w.msgs.clear();
            }
        }
    }

    /// Logs, once, a persistence wait that has held the messages behind it far
    /// longer than a sync takes: those messages (votes, append answers) are
    /// what the rest of the group waits for.
    fn report_stuck_persist_wait(&mut self) {
        let Some(w) = self.persist_waits.front() else {
            return;
        };
        if w.reported || w.since.elapsed() < STUCK_PERSIST_WAIT {
            return;
        }
        let (point, need_hs, msgs, waited) = (w.point, w.need_hs, w.msgs.len(), w.since.elapsed());
        let raft_last = self.raft.last_index();
        let raft_term_at_point = point.and_then(|p| self.raft.entry_term(p.index).ok());
        let log = self.raft.store_mut().log_mut();
        let progress = log.poll_progress().ok();
        let durable_hs = log.durable_hard_state().map(|h| (h.term, h.vote));
        let store_last = log.last_index();
        warn!(
            group = self.group_id,
            waited_ms = waited.as_millis() as u64,
            point = ?point,
            need_hs = ?need_hs,
            messages = msgs,
            written = progress.as_ref().map(|p| p.written_index),
            synced = progress.as_ref().map(|p| p.synced_index),
            durable_hs = ?durable_hs,
            backlog = self.io_backlog.len(),
            raft_last,
            raft_term_at_point = ?raft_term_at_point,
            store_last,
            waits = self.persist_waits.len(),
            "a persistence wait is stuck"
        );
        if let Some(w) = self.persist_waits.front_mut() {
            w.reported = true;
        }
    }

    /// Reports what the store made durable; returns whether anything was reported.
    fn check_persisted(&mut self) -> bool {
        if self.persist_waits.is_empty() {
            return false;
        }
        let progress = match self.raft.store_mut().log_mut().poll_progress() {
            Ok(p) => p,
            Err(e) => {
                self.fail(format!("the log stopped: {e}"));
                return false;
            }
        };
        let durable = if self.sync_force {
            progress.synced_index
        } else {
            progress.written_index
        };
        let durable_hs = self
            .raft
            .store_mut()
            .log_mut()
            .durable_hard_state()
            .map(|h| (h.term, h.vote));
        let backlog_has_entries = !self.io_backlog.is_empty();
        let mut any = false;
        while let Some(w) = self.persist_waits.front() {
            if backlog_has_entries && (w.point.is_some() || w.need_hs.is_some()) {
                break;
            }
            if let Some(p) = w.point
                && durable < p.index
            {
                break;
            }
            if let Some(need) = w.need_hs
                && !hard_state_covers(durable_hs, need)
            {
                break;
            }
            let Some(w) = self.persist_waits.pop_front() else {
                break;
            };
            self.send_messages(&w.msgs);
            if let Some(hs) = &w.hs {
                self.raft.on_hard_state_persisted(hs);
            }
            if let Some(p) = w.point {
                self.raft.on_persisted(p);
            }
            any = true;
        }
        any
    }

    fn maybe_snapshot(&mut self, closing: bool) {
        if self.failed {
            return;
        }
        let applied = self.sm.applied_index();
        let due = if closing {
            self.policy.due_on_close(self.last_snapshot_index, applied)
        } else {
            self.policy.due(
                Instant::now(),
                self.last_snapshot_at,
                self.last_snapshot_index,
                applied,
            )
        };
        if due.is_some()
            && let Err(e) = self.start_snapshot()
        {
            warn!(group = self.group_id, error = %e, "snapshot failed");
            self.last_error = e;
        }
    }

    /// Starts writing a snapshot of the state machine at its applied index on
    /// a blocking thread; the state machine keeps applying meanwhile (its
    /// snapshot stream shares copy-on-write shards). Returns false when there
    /// is nothing new to snapshot; true when a snapshot is (already) running.
    fn start_snapshot(&mut self) -> Result<bool, String> {
        if self.snapshot_job.is_some() {
            return Ok(true);
        }
        let index = self.sm.applied_index();
        self.last_snapshot_at = Instant::now();
        if index == 0 || index <= self.last_snapshot_index {
            return Ok(false);
        }
        let meta = self
            .raft
            .snapshot_meta(index)
            .map_err(|e| format!("snapshot metadata at {index}: {e}"))?;
        let st = self.raft.store();
        let writer = storage::blocking(|| st.begin_snapshot(&meta))
            .map_err(|e| format!("starting the snapshot at {index}: {e}"))?;
        let stream = self.sm.snapshot();
        let tx = self.snap_done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let r = storage::write_image(writer, stream)
                .map_err(|e| format!("writing the snapshot at {index}: {e}"));
            let _ = tx.send(r);
        });
        self.snapshot_job = Some(SnapshotJob {
            meta,
            started: Instant::now(),
        });
        Ok(true)
    }

    /// The snapshot written off the task is on disk (or failed): move the log
    /// start and answer the admin requests waiting for it.
    fn finish_snapshot(&mut self, done: Result<(), String>) {
        let Some(job) = self.snapshot_job.take() else {
            return;
        };
        let index = job.meta.index;
        let r = done.and_then(|()| {
            let delete_logs = self.delete_logs;
            let st = self.raft.store_mut();
            let moved = storage::blocking(|| st.snapshot_written(&job.meta, delete_logs))
                .map_err(|e| format!("recording the snapshot at {index}: {e}"))?;
            if moved {
                self.raft
                    .on_compacted(index)
                    .map_err(|e| format!("compacting to {index}: {e}"))?;
            }
            Ok(())
        });
        match &r {
            Ok(()) => {
                self.last_snapshot_index = self.last_snapshot_index.max(index);
                info!(
                    group = self.group_id,
                    index,
                    ms = job.started.elapsed().as_millis() as u64,
                    "snapshot saved"
                );
            }
            Err(e) => {
                warn!(group = self.group_id, error = %e, "snapshot failed");
                self.last_error = e.clone();
            }
        }
        for w in self.snapshot_waiters.drain(..) {
            let _ = w.send(match &r {
                Ok(()) => Ok(AdminResponse {
                    index,
                    message: format!("snapshot saved at index {index}"),
                }),
                Err(e) => Err((Status::SYS_ERROR, e.clone())),
            });
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed {
            return;
        }
        warn!(group = self.group_id, error = %why, "group stopped by an error");
        self.last_error = why;
        self.failed = true;
        let msg = format!("group {} stopped: {}", self.group_id, self.last_error);
        self.pending_write_bytes = 0;
        for (_, (_, _, r, _)) in self.pending_writes.drain() {
            r.error(Status::SYS_ERROR, &msg);
        }
        for (_, (_, r)) in self.held.drain() {
            r.error(Status::RAFT_GROUP_STOPPED, &msg);
        }
        self.watches.cancel_all(&msg);
        self.publish();
    }

    /// Builds and publishes the status copy readers see.
    /// What a status reader must see without waiting for a tick: role, term,
    /// leader, and whether the term's first entry is applied.
    fn role_key(&self) -> (Role, u64, u64, bool) {
        let term = self.raft.term();
        let ready = self
            .raft
            .entry_term(self.sm.applied_index())
            .is_ok_and(|t| t == term);
        (self.raft.role(), term, self.raft.leader(), ready)
    }

    /// WARN, at most every [`APPLY_LAG_WARN_EVERY`], while committed entries
    /// not yet applied here number [`APPLY_LAG_WARN`] or more and keep growing.
    fn warn_apply_lag(&mut self) {
        let commit = self.raft.commit_index();
        let applied = self.sm.applied_index();
        let lag = commit.saturating_sub(applied);
        let growing = lag > self.apply_lag_seen;
        self.apply_lag_seen = lag;
        if lag < APPLY_LAG_WARN || !growing {
            return;
        }
        if self
            .apply_lag_warned_at
            .is_some_and(|t| t.elapsed() < APPLY_LAG_WARN_EVERY)
        {
            return;
        }
        self.apply_lag_warned_at = Some(Instant::now());
        warn!(
            group = self.group_id,
            node = self.shared.node_id,
            lag,
            commit,
            applied,
            "apply lag growing: committed entries wait to be applied here"
        );
    }

    /// One INFO line per change an operator follows: a new or lost leader,
    /// becoming an observer, the group becoming ready. (Elections and
    /// becoming leader are logged by the raft core.)
    fn log_role_change(&mut self, old: (Role, u64, u64, bool), new: (Role, u64, u64, bool)) {
        let (role, term, leader, ready) = new;
        let (group, node) = (self.group_id, self.shared.node_id);
        if role == Role::Candidate && (old.0 != Role::Candidate || term != old.1) {
            self.elections += 1;
        }
        if leader != old.2 && leader != 0 {
            self.leader_changes += 1;
        }
        if leader != old.2 {
            if leader == 0 {
                info!(group, node, term, previous_leader = old.2, "leader lost");
            } else if role != Role::Leader {
                info!(group, node, term, leader, role = ?role, "following a new leader");
            }
        }
        if role != old.0 && role == Role::Observer {
            info!(group, node, term, "became observer");
        }
        if ready && !old.3 {
            info!(
                group,
                node,
                term,
                applied = self.sm.applied_index(),
                "group ready: the leader's term has an applied entry here"
            );
        }
    }

    pub(crate) fn publish(&self) {
        let s = self.raft.status();
        let role = if self.failed || self.stopping.is_some() {
            StatusRole::Stopped
        } else {
            match s.role {
                Role::Leader => StatusRole::Leader,
                Role::Candidate | Role::PreCandidate => StatusRole::Candidate,
                Role::Observer => StatusRole::Observer,
                Role::Removed => StatusRole::Stopped,
                Role::Follower => StatusRole::Follower,
            }
        };
        let applied = self.sm.applied_index();
        let ready = s.leader != 0
            && !self.failed
            && self
                .raft
                .entry_term(applied)
                .map(|t| t == s.term)
                .unwrap_or(false);
        let st = GroupStatus {
            group_id: self.group_id,
            node_id: self.shared.node_id,
            role: Some(role),
            term: s.term,
            leader_id: s.leader as u32,
            commit_index: s.commit,
            applied_index: applied,
            last_log_index: s.last_index,
            apply_lag: s.commit.saturating_sub(applied),
            members: s.membership.members.iter().map(|&i| i as u32).collect(),
            observers: s.membership.observers.iter().map(|&i| i as u32).collect(),
            joint: s.membership.joint.as_ref().map(|j| JointStatus {
                prepare_index: j.prepare_index,
                members: j.target.members.iter().map(|&i| i as u32).collect(),
                observers: j.target.observers.iter().map(|&i| i as u32).collect(),
            }),
            membership_index: s.membership.index,
            last_error: self.last_error.clone(),
            ready,
            snapshot_index: self.last_snapshot_index,
            leader_service: if s.leader == 0 {
                None
            } else {
                self.shared.service_endpoint(s.leader as u32)
            },
            leader_changes: self.leader_changes,
            elections: self.elections,
            keys: self.sm.node_count() as u64,
            sessions: self.sm.session_count() as u64,
            watches: self.watches.count() as u64,
        };
        self.status_tx.send_if_modified(|old| {
            if *old != st {
                *old = st;
                true
            } else {
                false
            }
        });
    }

    async fn close(mut self) {
        let stopping = self.stopping.take();
        let delete = stopping.as_ref().is_some_and(|s| s.delete);
        for (_, (_, _, r, _)) in self.pending_writes.drain() {
            // Proposed: a new leader may still commit it, so the outcome is unknown.
            r.error(
                Status::SYS_ERROR,
                "the group stopped before the write was applied; whether it takes effect is unknown",
            );
        }
        for (_, (_, r)) in self.held.drain() {
            r.error(Status::STOPPING, "the group is shutting down");
        }
        self.watches.cancel_all("the group is shutting down");
        if self.snapshot_job.is_some()
            && let Some(done) = self.snap_done_rx.recv().await
        {
            self.finish_snapshot(done);
        }
        if !delete {
            self.maybe_snapshot(true);
            if self.snapshot_job.is_some()
                && let Some(done) = self.snap_done_rx.recv().await
            {
                self.finish_snapshot(done);
            }
        }
        self.failed = true;
        self.stopping = None;
        let mut st = self.status_tx.borrow().clone();
        st.role = Some(StatusRole::Stopped);
        let _ = self.status_tx.send(st);
        let dir = self.dir.clone();
        let group_id = self.group_id;
        let storage = self.raft.into_store();
        let r = tokio::task::spawn_blocking(move || {
            let r = storage.close();
            if delete {
                let _ = std::fs::remove_dir_all(&dir);
            }
            r
        })
        .await;
        match r {
            Ok(Ok(())) => info!(group = group_id, "group closed"),
            Ok(Err(e)) => warn!(group = group_id, error = %e, "closing the log failed"),
            Err(e) => warn!(group = group_id, error = %e, "closing the log panicked"),
        }
        if let Some(s) = stopping {
            let _ = s.reply.send(());
        }
    }
}

/// Checks what can be checked before a write reaches the log, so a request that
/// can only fail never costs a log entry.
fn precheck(op: &Op, limits: &dongting_kv::KvLimits) -> Result<(), KvError> {
    let key = |k: &[u8]| dongting_kv::validate_key(k, limits.max_key_bytes, false);
    let value = |v: &[u8]| {
        if v.len() > limits.max_value_bytes {
            Err(KvError::ValueTooLarge(format!(
                "value is {} bytes, limit is {}",
                v.len(),
                limits.max_value_bytes
            )))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Put { key: k, value: v } => {
            key(k)?;
            value(v)
        }
        Op::Remove { key: k } | Op::Mkdir { key: k } => key(k),
        Op::CompareAndSet {
            key: k,
            expected,
            new_value,
        } => {
            key(k)?;
            value(expected)?;
            value(new_value)
        }
        // A batch with one bad key or value is refused whole: bad input
        // changes nothing, also for the batch's other keys.
        Op::BatchPut { entries } => entries.iter().try_for_each(|(k, v)| {
            key(k)?;
            value(v)
        }),
        Op::BatchRemove { keys } => keys.iter().try_for_each(|k| key(k)),
        Op::PutTemp {
            key: k, value: v, ..
        } => {
            key(k)?;
            value(v)
        }
        Op::MakeTempDir { key: k, .. }
        | Op::UpdateTtl { key: k, .. }
        | Op::TryLock { key: k, .. }
        | Op::Unlock { key: k }
        | Op::UpdateLease { key: k, .. } => key(k),
        Op::Expire { .. } => Ok(()),
    }
}

/// Whether the durable `(term, vote)` covers the `(term, vote)` a wait needs.
/// Hard states are written in order, and within a term the vote only goes
/// from none to a candidate, so a later vote in the same term, or any later
/// term, implies the needed state was written. Requiring an exact match
/// instead would hold the wait, and every message queued behind it, forever
/// once a vote in the same term was written after it: a follower in that
/// state never answers its leader again.
fn hard_state_covers(durable: Option<(u64, u64)>, need: (u64, u64)) -> bool {
    let (t, v) = need;
    match durable {
        Some((dt, dv)) => dt > t || (dt == t && (dv == v || v == dongting_raft::NONE)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::hard_state_covers;

    #[test]
    fn a_later_vote_in_the_same_term_covers_the_term_change() {
        // Learned term 7 without a leader (vote none), then voted for node 2 in
        // term 7; both writes became durable before the check.
        assert!(hard_state_covers(Some((7, 2)), (7, 0)));
        assert!(hard_state_covers(Some((7, 2)), (7, 2)));
        assert!(hard_state_covers(Some((8, 0)), (7, 2)));
    }

    #[test]
    fn an_older_hard_state_does_not_cover() {
        assert!(!hard_state_covers(None, (7, 0)));
        assert!(!hard_state_covers(Some((6, 1)), (7, 0)));
        assert!(!hard_state_covers(Some((7, 0)), (7, 2)));
        assert!(!hard_state_covers(Some((7, 3)), (7, 2)));
    }
}
