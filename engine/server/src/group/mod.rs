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
//!
//! The task composes parts with one job each: [`persist`] (the store backlog
//! and the waits for durability), [`apply`] (committed entries and the
//! writes that wait for them), [`reads`] (ReadIndex rounds), [`snapshot`]
//! (saving and installing images), [`stop`] (handing leadership over and
//! closing on shutdown); [`admin`] serves admin operations and [`report`]
//! the published status and the operator's log lines.

mod admin;
mod apply;
pub(crate) mod backup;
pub(crate) mod metrics;
mod persist;
mod reads;
mod report;
mod snapshot;
mod stop;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{KvError, KvStateMachine, Op, ReadRequest, WriteResult};
use dongting_net::Status;
use dongting_net::proto::LeaderHint;
use dongting_raft::{Message, NodeId, Proposed, RawNode, Role};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

pub(crate) use self::apply::Pending;
pub(crate) use self::backup::Backups;
pub(crate) use self::metrics::GroupMetrics;
pub(crate) use self::persist::Persistence;
pub(crate) use self::reads::Reads;
pub(crate) use self::report::Observed;
pub(crate) use self::snapshot::Snapshots;
pub(crate) use self::stop::Stopping;
use crate::clock::{mono_ms, wall_ms};
use crate::inbox::{AdminOp, GroupMsg};
use crate::metrics_kv::KvResponder;
use crate::shared::NodeShared;
use crate::storage::GroupStorage;
use dongting_proto::service::ReadMode;
use dongting_proto::status::{GroupStatus, Role as StatusRole};

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

/// Everything the group task owns.
pub(crate) struct GroupTask {
    pub(crate) group_id: u32,
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) raft: RawNode<GroupStorage>,
    pub(crate) sm: KvStateMachine,
    pub(crate) rx: mpsc::Receiver<GroupMsg>,
    pub(crate) status_tx: watch::Sender<GroupStatus>,
    /// Woken by the log store when it has progress to report.
    pub(crate) notify: Arc<Notify>,
    /// Most committed entries a node may lack when it is made a voter
    /// (`max_replicate_items`: one replication window).
    pub(crate) max_promote_behind: u64,
    pub(crate) tick_ms: u64,
    pub(crate) dir: PathBuf,
    /// Writes proposed here and not yet answered.
    pub(crate) pending: Pending<KvResponder>,
    /// Reads waiting for their ReadIndex round.
    pub(crate) reads: Reads<(ReadRequest, KvResponder)>,
    /// The store backlog and what waits for durability.
    pub(crate) persist: Persistence,
    pub(crate) snapshots: Snapshots,
    /// Scheduled backups (written by the leader only).
    pub(crate) backups: Backups,
    /// Leader changes, elections and apply lag seen (for status and logs).
    pub(crate) observed: Observed,
    pub(crate) last_error: String,
    pub(crate) failed: bool,
    pub(crate) stopping: Option<Stopping>,
    /// Index of the last expiry proposal; no new ones until it is applied.
    pub(crate) expire_applied_at: u64,
    /// The group's watches on this node.
    pub(crate) watches: crate::watch::WatchHub,
    /// Connections of clients queued for a lock through this node.
    pub(crate) lock_pushers: crate::locks::LockPushers,
    /// Ticks since closed connections were last forgotten.
    pub(crate) ticks_since_prune: u32,
    /// What `/metrics` shows of this group beyond its status.
    pub(crate) metrics: Arc<GroupMetrics>,
}

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
                        self.maybe_backup();
                        self.propose_expiries();
                        self.persist.report_stuck(self.group_id, &mut self.raft);
                        self.warn_apply_lag();
                        self.watch_quorum();
                        self.refresh_metrics();
                        self.watches.tick(&self.sm);
                        self.ticks_since_prune += 1;
                        if self.ticks_since_prune >= PRUNE_EVERY_TICKS {
                            self.ticks_since_prune = 0;
                            self.lock_pushers.prune();
                        }
                    }
                    _ = notify.notified() => {}
                    Some(done) = self.snapshots.done_rx.recv() => self.finish_snapshot(done),
                    Some(done) = self.backups.done_rx.recv() => self.finish_backup(done),
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
            self.check_handover();
            if let Some(s) = &self.stopping
                && s.may_close(self.pending.is_empty(), Instant::now())
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
            } => self.admin_snapshot(reply),
            GroupMsg::Admin { op, reply } => {
                let r = self.admin(op);
                let _ = reply.send(r);
            }
            GroupMsg::Publish(reply) => {
                self.refresh_metrics();
                self.publish();
                let _ = reply.send(());
            }
            GroupMsg::Stop {
                grace,
                delete,
                reply,
            } => self.begin_stop(grace, delete, reply),
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

    fn not_leader(&self, responder: KvResponder) {
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

    fn refuse_if_unavailable(&self, responder: KvResponder) -> Option<KvResponder> {
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

    fn propose(&mut self, body: Bytes, cmd: dongting_kv::Command, responder: KvResponder) {
        let Some(responder) = self.park_if_handing_over(responder) else {
            return;
        };
        let Some(responder) = self.refuse_if_unavailable(responder) else {
            return;
        };
        if self.raft.role() != Role::Leader {
            self.not_leader(responder);
            return;
        }
        if self.pending.is_full() || self.persist.backlog_len() >= MAX_IO_BACKLOG {
            self.proposal_failed(1);
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
            responder.ok_write(&r);
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
                responder.ok_write(&r);
            }
            Ok(Proposed::Appended(id)) => self.pending.appended(id, size, responder, Some(cmd)),
            Ok(Proposed::Held(id)) => self.pending.held(id, size, responder),
            Err(dongting_raft::ProposeError::NotLeader { .. }) => {
                self.proposal_failed(1);
                self.not_leader(responder)
            }
            Err(e) => {
                self.proposal_failed(1);
                responder.error(Status::CLIENT_ERROR, &e.to_string())
            }
        }
    }

    fn read(&mut self, req: ReadRequest, mode: ReadMode, responder: KvResponder) {
        let Some(responder) = self.park_if_handing_over(responder) else {
            return;
        };
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
            _ => self.reads.push((req, responder)),
        }
    }

    /// On the leader: proposes the expiry of temporary nodes, lock leases and
    /// lock waiters whose deadline passed (DtKV only knows the time carried by
    /// commands). One batch at a time: the next waits until the previous one
    /// is applied.
    fn propose_expiries(&mut self) {
        if self.raft.role() != Role::Leader
            || self.failed
            || self.stopping.is_some()
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
        let Some((ctx, batch)) = self.reads.take_batch() else {
            return;
        };
        // The raft core answers a leader with a valid lease at once and
        // runs a heartbeat round otherwise; a follower always asks the leader.
        let n = batch.len() as u64;
        let kind = if self.raft.lease_read_ready() {
            &self.metrics.reads_lease
        } else {
            &self.metrics.reads_read_index
        };
        match self.raft.read_index(ctx) {
            Ok(()) => {
                GroupMetrics::add(kind, n);
                self.reads.started(ctx, batch)
            }
            Err(_) => {
                for (_, r) in batch {
                    self.not_leader(r);
                }
            }
        }
    }

    fn serve(&self, req: &ReadRequest, responder: KvResponder) {
        serve(&self.sm, req, responder);
    }

    /// Handles one raft ready; returns how many committed entries it applied.
    fn process_ready(&mut self) -> usize {
        let mut rd = self.raft.ready();
        let applied = rd.committed_entries.len();
        self.send_messages(&rd.messages);
        if let Some(snap) = &rd.snapshot {
            self.persist.on_snapshot(snap.meta.index);
            let installed =
                match self
                    .snapshots
                    .install(snap, &mut self.raft, &mut self.sm, &mut self.watches)
                {
                    Ok(s) => s,
                    Err(e) => {
                        GroupMetrics::add(&self.metrics.snapshots_failed, 1);
                        self.fail(e);
                        return 0;
                    }
                };
            self.metrics
                .snapshot_done(true, installed.bytes, installed.micros);
            info!(
                group = self.group_id,
                node = self.shared.node_id,
                term = self.raft.term(),
                index = installed.index,
                bytes = installed.bytes,
                ms = installed.micros / 1000,
                "snapshot installed"
            );
        }
        let point = rd.persist_point();
        // Moved, not cloned: the ready's entries are not used again.
        let entries = std::mem::take(&mut rd.entries);
        let raft = &mut self.raft;
        self.persist
            .queue_entries(entries, || raft.store_mut().log_mut().last_index());
        let mut need_hs = None;
        if let Some((hs, membership)) = self
            .persist
            .queue_hard_state(rd.hard_state, rd.membership.as_ref())
        {
            self.raft.store_mut().set_persisted_state(hs, membership);
            need_hs = Some((hs.term, hs.vote));
        }
        self.persist
            .wait(point, rd.hard_state, need_hs, rd.persisted_messages);
        // Committed entries are durable locally already.
        if let Some(i) = self.apply_committed(&rd.committed_entries) {
            self.raft.on_applied(i);
        } else if let Some(s) = &rd.snapshot {
            self.raft.on_applied(s.meta.index);
        }
        let applied_index = self.sm.applied_index();
        for rs in rd.read_states {
            let batch = match rs.result {
                Ok(index) => self.reads.confirmed(rs.ctx, index, applied_index),
                Err(_) => {
                    if let Some(batch) = self.reads.refused(rs.ctx) {
                        for (_, r) in batch {
                            self.not_leader(r);
                        }
                    }
                    None
                }
            };
            for (req, r) in batch.into_iter().flatten() {
                self.serve(&req, r);
            }
        }
        for hp in rd.held_proposals {
            if let Some(responder) = self.pending.resolve_held(hp.id, hp.result.ok()) {
                self.proposal_failed(1);
                self.not_leader(responder);
            }
        }
        let sm = &self.sm;
        self.reads
            .release(sm.applied_index(), |(req, r)| serve(sm, &req, r));
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

    /// Hands queued store operations to the log until it pushes back.
    fn flush_io(&mut self) {
        if let Err(e) = self.persist.flush(self.raft.store_mut().log_mut()) {
            self.fail(format!("the log refused a write: {e}"));
        }
    }

    /// Reports what the store made durable; returns whether anything was reported.
    fn check_persisted(&mut self) -> bool {
        let durable = match self.persist.durable(self.raft.store_mut().log_mut()) {
            Ok(Some(d)) => d,
            Ok(None) => return false,
            Err(e) => {
                self.fail(format!("the log stopped: {e}"));
                return false;
            }
        };
        let mut any = false;
        while let Some(w) = self.persist.pop_durable(&durable) {
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

    fn fail(&mut self, why: String) {
        if self.failed {
            return;
        }
        warn!(group = self.group_id, error = %why, "group stopped by an error");
        self.last_error = why;
        self.failed = true;
        let msg = format!("group {} stopped: {}", self.group_id, self.last_error);
        let (writes, held) = self.pending.drain();
        self.proposal_failed((writes.len() + held.len()) as u64);
        for r in writes {
            r.error(Status::SYS_ERROR, &msg);
        }
        for r in held {
            r.error(Status::RAFT_GROUP_STOPPED, &msg);
        }
        self.watches.cancel_all(&msg);
        self.publish();
    }

    async fn close(mut self) {
        let mut stopping = self.stopping.take();
        if let Some(s) = stopping.as_mut() {
            Self::drop_parked(s);
        }
        let delete = stopping.as_ref().is_some_and(|s| s.delete);
        let (writes, held) = self.pending.drain();
        self.proposal_failed((writes.len() + held.len()) as u64);
        for r in writes {
            // Proposed: a new leader may still commit it, so the outcome is unknown.
            r.error(
                Status::SYS_ERROR,
                "the group stopped before the write was applied; whether it takes effect is unknown",
            );
        }
        for r in held {
            r.error(Status::STOPPING, "the group is shutting down");
        }
        self.watches.cancel_all("the group is shutting down");
        if self.snapshots.running()
            && let Some(done) = self.snapshots.done_rx.recv().await
        {
            self.finish_snapshot(done);
        }
        if !delete {
            self.maybe_snapshot(true);
            if self.snapshots.running()
                && let Some(done) = self.snapshots.done_rx.recv().await
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

/// Answers a read from the state machine as it is now.
fn serve(sm: &KvStateMachine, req: &ReadRequest, responder: KvResponder) {
    responder.ok_read(req, &sm.read(req));
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
