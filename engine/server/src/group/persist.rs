//! What a group hands to its log store and what waits for the store: the
//! backlog of store operations in the order raft asked for them, and the
//! messages and progress reports held until their entries and hard state are
//! durable.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dongting_raft::{Entry, HardState, LogId, Membership, Message, RawNode};
use dongting_store::{LogRecord, RaftLog, StoreError};
use tracing::warn;

use crate::storage::{self, GroupStorage};

/// A persistence wait older than this is logged once as stuck.
const STUCK_PERSIST_WAIT: Duration = Duration::from_secs(10);

/// A store operation in the order raft asked for it.
pub(crate) enum IoOp {
    Truncate(u64),
    Append(Vec<LogRecord>),
    SaveHardState(dongting_store::HardState),
}

/// Messages and progress reports that wait until the store made their
/// entries and hard state durable.
pub(crate) struct PersistWait {
    pub(crate) point: Option<LogId>,
    pub(crate) hs: Option<HardState>,
    /// Term and vote that must be durable first (when they changed).
    need_hs: Option<(u64, u64)>,
    pub(crate) msgs: Vec<Message>,
    /// When the wait was queued; a wait far older than any sync is reported.
    since: Instant,
    reported: bool,
}

/// What the store reports durable: the last log index and the hard state's
/// `(term, vote)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durable {
    index: u64,
    hs: Option<(u64, u64)>,
}

/// A group's store backlog and persistence waits.
pub(crate) struct Persistence {
    /// Whether an entry counts as durable once synced (else once written).
    sync_force: bool,
    backlog: VecDeque<IoOp>,
    waits: VecDeque<PersistWait>,
    /// Term and vote of the last hard state queued for saving.
    saved_term_vote: (u64, u64),
    /// The last hard state raft emitted.
    last_hs: HardState,
    /// The last committed configuration raft emitted (persisted with the hard state).
    committed_membership: Membership,
}

impl Persistence {
    /// Starts from the hard state and configuration the store recovered.
    pub(crate) fn new(sync_force: bool, hs: HardState, membership: Membership) -> Persistence {
        Persistence {
            sync_force,
            backlog: VecDeque::new(),
            waits: VecDeque::new(),
            saved_term_vote: (hs.term, hs.vote),
            last_hs: hs,
            committed_membership: membership,
        }
    }

    /// Store operations not yet taken by the log.
    pub(crate) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// A snapshot at `index` replaces the log: older queued log writes are
    /// superseded by it (queued hard-state saves, term and vote, must still
    /// happen), and entries beyond it that were waiting to be written never
    /// will be.
    pub(crate) fn on_snapshot(&mut self, index: u64) {
        self.backlog
            .retain(|op| matches!(op, IoOp::SaveHardState(_)));
        self.supersede_waits(index + 1);
    }

    /// Queues raft's new entries, cutting the log back first when they
    /// overwrite entries it holds or will hold. `log_last` is the store's
    /// last index, asked for only when the backlog does not tell.
    pub(crate) fn queue_entries(&mut self, entries: Vec<Entry>, log_last: impl FnOnce() -> u64) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        if first <= self.queued_last_index(log_last) {
            self.backlog.push_back(IoOp::Truncate(first));
            self.supersede_waits(first);
        }
        self.backlog.push_back(IoOp::Append(
            entries.into_iter().map(storage::into_record).collect(),
        ));
    }

    /// Takes raft's hard state and newly committed configuration. When the
    /// term, the vote or the configuration changed, queues their save and
    /// returns what the store now holds as persisted state, with the
    /// `(term, vote)` that later waits need durable.
    pub(crate) fn queue_hard_state(
        &mut self,
        hs: Option<HardState>,
        membership: Option<&Membership>,
    ) -> Option<(HardState, Membership)> {
        if let Some(hs) = hs {
            self.last_hs = hs;
        }
        let term_vote_changed = (self.last_hs.term, self.last_hs.vote) != self.saved_term_vote;
        if !term_vote_changed && membership.is_none() {
            return None;
        }
        let hs = self.last_hs;
        // The committed configuration: the one in force may still hold an
        // uncommitted change that a new leader could truncate.
        if let Some(m) = membership {
            self.committed_membership = m.clone();
        }
        let membership = self.committed_membership.clone();
        self.backlog
            .push_back(IoOp::SaveHardState(dongting_store::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
                membership: membership.encode(),
            }));
        self.saved_term_vote = (hs.term, hs.vote);
        Some((hs, membership))
    }

    /// Holds `msgs` and the progress reports (`point`, `hs`) until the store
    /// has made the entries up to `point` and the `(term, vote)` `need_hs`
    /// durable. Nothing is queued when there is nothing to wait for.
    pub(crate) fn wait(
        &mut self,
        point: Option<LogId>,
        hs: Option<HardState>,
        need_hs: Option<(u64, u64)>,
        msgs: Vec<Message>,
    ) {
        if point.is_none() && need_hs.is_none() && msgs.is_empty() && hs.is_none() {
            return;
        }
        self.waits.push_back(PersistWait {
            point,
            hs,
            need_hs,
            msgs,
            since: Instant::now(),
            reported: false,
        });
    }

    /// Last log index once every queued store operation is done.
    fn queued_last_index(&self, log_last: impl FnOnce() -> u64) -> u64 {
        for op in self.backlog.iter().rev() {
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
        log_last()
    }

    /// Hands queued store operations to the log until it pushes back. An
    /// error other than backpressure or a full disk is returned: the log
    /// refused a write and the group cannot go on.
    pub(crate) fn flush(&mut self, log: &mut RaftLog) -> Result<(), StoreError> {
        while let Some(op) = self.backlog.front_mut() {
            let r = match op {
                IoOp::Truncate(i) => log.truncate_suffix(*i),
                IoOp::Append(recs) => log.append_owned(recs),
                IoOp::SaveHardState(hs) => log.save_hard_state(hs.clone()),
            };
            match r {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                Err(StoreError::Backpressure { .. }) | Err(StoreError::DiskFull { .. }) => {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The log is cut back to `from - 1`: waits for entries at or after `from`
    /// can no longer be met by those entries. Their messages (answers that
    /// acknowledge the entries now cut) are dropped, never sent: once a later
    /// entry at the same index is durable they would acknowledge something
    /// this node does not hold. Dropping is safe, as raft tolerates lost
    /// messages. What they depend on besides the log (the hard state) is
    /// still waited for, in order.
    fn supersede_waits(&mut self, from: u64) {
        for w in self.waits.iter_mut() {
            if w.point.is_some_and(|p| p.index >= from) {
                w.point = None;
                w.msgs.clear();
            }
        }
    }

    /// What the store has made durable, or `None` when no wait needs to know.
    pub(crate) fn durable(&self, log: &mut RaftLog) -> Result<Option<Durable>, StoreError> {
        if self.waits.is_empty() {
            return Ok(None);
        }
        let progress = log.poll_progress()?;
        let index = if self.sync_force {
            progress.synced_index
        } else {
            progress.written_index
        };
        let hs = log.durable_hard_state().map(|h| (h.term, h.vote));
        Ok(Some(Durable { index, hs }))
    }

    /// The oldest wait, once what it waits for is `durable`. Waits end in
    /// order; one that depends on the log or the hard state also waits for
    /// the backlog, whose operations come before it.
    pub(crate) fn pop_durable(&mut self, durable: &Durable) -> Option<PersistWait> {
        let w = self.waits.front()?;
        if !self.backlog.is_empty() && (w.point.is_some() || w.need_hs.is_some()) {
            return None;
        }
        if let Some(p) = w.point
            && durable.index < p.index
        {
            return None;
        }
        if let Some(need) = w.need_hs
            && !hard_state_covers(durable.hs, need)
        {
            return None;
        }
        self.waits.pop_front()
    }

    /// Logs, once, a persistence wait that has held the messages behind it far
    /// longer than a sync takes: those messages (votes, append answers) are
    /// what the rest of the group waits for.
    pub(crate) fn report_stuck(&mut self, group_id: u32, raft: &mut RawNode<GroupStorage>) {
        let Some(w) = self.waits.front() else {
            return;
        };
        if w.reported || w.since.elapsed() < STUCK_PERSIST_WAIT {
            return;
        }
        let (point, need_hs, msgs, waited) = (w.point, w.need_hs, w.msgs.len(), w.since.elapsed());
        let raft_last = raft.last_index();
        let raft_term_at_point = point.and_then(|p| raft.entry_term(p.index).ok());
        let log = raft.store_mut().log_mut();
        let progress = log.poll_progress().ok();
        let durable_hs = log.durable_hard_state().map(|h| (h.term, h.vote));
        let store_last = log.last_index();
        warn!(
            group = group_id,
            waited_ms = waited.as_millis() as u64,
            point = ?point,
            need_hs = ?need_hs,
            messages = msgs,
            written = progress.as_ref().map(|p| p.written_index),
            synced = progress.as_ref().map(|p| p.synced_index),
            durable_hs = ?durable_hs,
            backlog = self.backlog.len(),
            raft_last,
            raft_term_at_point = ?raft_term_at_point,
            store_last,
            waits = self.waits.len(),
            "a persistence wait is stuck"
        );
        if let Some(w) = self.waits.front_mut() {
            w.reported = true;
        }
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
    use bytes::Bytes;
    use dongting_raft::{Entry, EntryKind, HardState, LogId, Membership};

    use super::{Durable, IoOp, Persistence, hard_state_covers};

    fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                term,
                index,
                kind: EntryKind::Normal,
                data: Bytes::new(),
            })
            .collect()
    }

    fn fresh() -> Persistence {
        Persistence::new(true, HardState::default(), Membership::new(&[1], &[]))
    }

    fn at(index: u64, term: u64) -> Option<LogId> {
        Some(LogId { index, term })
    }

    fn durable(index: u64, hs: Option<(u64, u64)>) -> Durable {
        Durable { index, hs }
    }

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

    #[test]
    fn waits_end_in_order_once_durable_and_the_backlog_is_empty() {
        let mut p = fresh();
        p.queue_entries(entries(1, 3, 1), || 0);
        p.wait(at(3, 1), None, None, Vec::new());
        p.queue_entries(entries(4, 5, 1), || unreachable!("the backlog knows"));
        p.wait(at(5, 1), None, None, Vec::new());
        // Queued operations not yet taken by the log hold every log wait.
        assert!(p.pop_durable(&durable(5, None)).is_none());
        p.backlog.clear();
        assert!(p.pop_durable(&durable(2, None)).is_none());
        let w = p
            .pop_durable(&durable(4, None))
            .expect("first wait is durable");
        assert_eq!(w.point, at(3, 1));
        assert!(p.pop_durable(&durable(4, None)).is_none());
        assert!(p.pop_durable(&durable(5, None)).is_some());
        assert!(p.pop_durable(&durable(9, None)).is_none());
    }

    #[test]
    fn overwritten_entries_cut_the_log_and_drop_their_waits_messages() {
        let mut p = fresh();
        p.queue_entries(entries(1, 5, 1), || 0);
        let vote = dongting_raft::Message {
            from: 1,
            to: 2,
            term: 1,
            body: dongting_raft::MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted: true,
            },
        };
        p.wait(at(5, 1), None, None, vec![vote]);
        p.queue_entries(entries(4, 4, 2), || unreachable!("the backlog knows"));
        assert!(matches!(p.backlog.get(1), Some(IoOp::Truncate(4))));
        let w = &p.waits[0];
        assert!(w.point.is_none() && w.msgs.is_empty());
        // With the backlog empty, the log asks the store where it ends.
        p.backlog.clear();
        p.queue_entries(entries(6, 6, 2), || 5);
        assert_eq!(p.backlog.len(), 1);
    }

    #[test]
    fn a_term_or_vote_change_is_saved_and_waited_for() {
        let mut p = fresh();
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 0,
        };
        let (saved, _) = p
            .queue_hard_state(Some(hs), None)
            .expect("the term changed");
        assert_eq!((saved.term, saved.vote), (3, 2));
        // Only the commit index moved: nothing to save.
        let later = HardState { commit: 9, ..hs };
        assert!(p.queue_hard_state(Some(later), None).is_none());
        p.wait(None, Some(hs), Some((3, 2)), Vec::new());
        p.on_snapshot(10);
        assert!(matches!(p.backlog.front(), Some(IoOp::SaveHardState(_))));
        p.backlog.clear();
        assert!(p.pop_durable(&durable(0, Some((3, 0)))).is_none());
        assert!(p.pop_durable(&durable(0, Some((3, 2)))).is_some());
    }
}
