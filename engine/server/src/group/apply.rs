//! Applying committed entries and answering the writes that wait for them.
//!
//! [`Pending`] holds the writes this node proposed until their entries are
//! applied (or lost to another leader); the group task applies each committed
//! entry to the state machine, feeds its events to the watches and its lock
//! notifications to the lock pushers, and answers the matching write.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use dongting_kv::{Command, Op};
use dongting_raft::{Entry, EntryKind, LogId};

use super::{GroupMetrics, GroupTask};
use crate::failpoints::{self, Failpoint};

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

/// A write proposed by this node: its term, its size, whom to answer and the
/// decoded command when this node proposed it in that term and slot (so its
/// apply needs no second decode).
struct PendingWrite<R> {
    term: u64,
    size: u64,
    responder: R,
    cmd: Option<Command>,
}

/// Who waits for a committed entry.
pub(crate) enum Waiter<R> {
    /// The write proposed here in the entry's term: the entry is that write.
    Proposed { responder: R, cmd: Option<Command> },
    /// A write proposed here at the same index in an earlier term: another
    /// leader's entry replaced it.
    Replaced(R),
}

/// The writes a group proposed and has not answered, with their limits.
/// `R` is whom to answer.
pub(crate) struct Pending<R> {
    /// Proposed writes by log index.
    writes: HashMap<u64, PendingWrite<R>, BuildHasherDefault<IndexHasher>>,
    /// Writes held during a leader transfer: id -> (size, responder).
    held: HashMap<u64, (u64, R)>,
    /// Bytes of the writes in `writes` and `held`.
    bytes: u64,
    max_writes: usize,
    max_bytes: u64,
}

impl<R> Pending<R> {
    pub(crate) fn new(max_writes: usize, max_bytes: u64) -> Pending<R> {
        Pending {
            writes: HashMap::default(),
            held: HashMap::new(),
            bytes: 0,
            max_writes,
            max_bytes,
        }
    }

    /// Whether a new write would exceed the count or byte limit.
    pub(crate) fn is_full(&self) -> bool {
        self.writes.len() + self.held.len() >= self.max_writes || self.bytes >= self.max_bytes
    }

    /// Writes proposed or held and not yet answered.
    pub(crate) fn len(&self) -> usize {
        self.writes.len() + self.held.len()
    }

    /// No proposed write waits for its entry (held writes are not counted).
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// A write of `size` bytes was appended at `id`.
    pub(crate) fn appended(&mut self, id: LogId, size: u64, responder: R, cmd: Option<Command>) {
        self.bytes += size;
        self.writes.insert(
            id.index,
            PendingWrite {
                term: id.term,
                size,
                responder,
                cmd,
            },
        );
    }

    /// A write of `size` bytes was held (leader transfer) under `id`.
    pub(crate) fn held(&mut self, id: u64, size: u64, responder: R) {
        self.bytes += size;
        self.held.insert(id, (size, responder));
    }

    /// A held write was appended at `appended`, or dropped (`None`): then
    /// returns whom to tell.
    pub(crate) fn resolve_held(&mut self, id: u64, appended: Option<LogId>) -> Option<R> {
        let (size, responder) = self.held.remove(&id)?;
        match appended {
            Some(at) => {
                self.bytes -= size;
                self.appended(at, size, responder, None);
                None
            }
            None => {
                self.bytes -= size;
                Some(responder)
            }
        }
    }

    /// Who waits for the entry committed at `index` in `term`, if anyone.
    pub(crate) fn take(&mut self, index: u64, term: u64) -> Option<Waiter<R>> {
        let w = self.writes.remove(&index)?;
        self.bytes -= w.size;
        Some(if w.term == term {
            Waiter::Proposed {
                responder: w.responder,
                cmd: w.cmd,
            }
        } else {
            Waiter::Replaced(w.responder)
        })
    }

    /// Every proposed write and every held write, forgotten; to answer them
    /// when the group stops.
    pub(crate) fn drain(&mut self) -> (Vec<R>, Vec<R>) {
        self.bytes = 0;
        let writes = self.writes.drain().map(|(_, w)| w.responder).collect();
        let held = self.held.drain().map(|(_, (_, r))| r).collect();
        (writes, held)
    }
}

impl GroupTask {
    /// Applies committed entries in order and answers the writes proposed here;
    /// returns the index of the last one.
    pub(super) fn apply_committed(&mut self, entries: &[Entry]) -> Option<u64> {
        let mut last_applied = None;
        for e in entries {
            match e.kind {
                EntryKind::Normal => self.apply_normal(e),
                _ => {
                    self.sm.advance(e.index);
                    if let Some(Waiter::Proposed { responder, .. } | Waiter::Replaced(responder)) =
                        self.pending.take(e.index, e.term)
                    {
                        self.proposal_failed(1);
                        self.not_leader(responder);
                    }
                    self.log_membership_applied(e);
                }
            }
            last_applied = Some(e.index);
        }
        self.watches.dispatch();
        last_applied
    }

    fn apply_normal(&mut self, e: &Entry) {
        let waiter = self.pending.take(e.index, e.term);
        let r = match &waiter {
            Some(Waiter::Proposed {
                responder,
                cmd: Some(cmd),
            }) => {
                if let Op::TryLock {
                    wait_timeout_ms, ..
                } = cmd.op
                    && let Some(conn) = responder.conn()
                {
                    // A waiting client hears of its lock on this connection:
                    // not idle while it may wait.
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
        match waiter {
            Some(Waiter::Proposed { responder, .. }) => {
                let mut result = r.result;
                if failpoints::active(Failpoint::LockGrantWhileHeld)
                    && let Ok(dongting_kv::Outcome::Lock(dongting_kv::LockOutcome::NotAcquired {
                        ..
                    })) = result.outcome
                {
                    // Planted bug: a lock held by another client is reported
                    // granted (token: this entry's index).
                    result.outcome = Ok(dongting_kv::Outcome::Lock(
                        dongting_kv::LockOutcome::Acquired {
                            token: result.index,
                            lease_deadline_ms: 0,
                        },
                    ));
                }
                responder.ok_write(&result);
                GroupMetrics::add(&self.metrics.proposals_committed, 1);
            }
            Some(Waiter::Replaced(responder)) => {
                self.proposal_failed(1);
                self.not_leader(responder)
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use dongting_kv::{Command, Op};
    use dongting_raft::LogId;

    use super::{Pending, Waiter};

    fn id(index: u64, term: u64) -> LogId {
        LogId { index, term }
    }

    fn put() -> Command {
        Command::unsessioned(
            0,
            Op::Put {
                key: b"k".to_vec().into(),
                value: b"v".to_vec().into(),
            },
        )
    }

    #[test]
    fn an_entry_answers_the_write_proposed_in_its_term() {
        let mut p = Pending::new(10, 1000);
        p.appended(id(5, 2), 100, "five", Some(put()));
        p.appended(id(6, 2), 50, "six", None);
        assert!(matches!(
            p.take(5, 2),
            Some(Waiter::Proposed {
                responder: "five",
                cmd: Some(_)
            })
        ));
        // Another leader's entry at index 6: the write proposed here is lost.
        assert!(matches!(p.take(6, 3), Some(Waiter::Replaced("six"))));
        assert!(p.take(7, 3).is_none());
        assert!(p.is_empty());
        assert_eq!(p.bytes, 0);
    }

    #[test]
    fn limits_count_held_writes_and_bytes() {
        let mut p = Pending::new(2, 1000);
        p.held(1, 10, "held");
        assert!(!p.is_full());
        p.appended(id(3, 1), 10, "three", None);
        assert!(p.is_full());
        assert_eq!(p.resolve_held(1, Some(id(4, 1))), None);
        assert!(p.is_full());
        assert!(matches!(
            p.take(4, 1),
            Some(Waiter::Proposed {
                responder: "held",
                cmd: None
            })
        ));
        assert!(!p.is_full());
        let mut p = Pending::new(100, 25);
        p.held(1, 20, "dropped");
        p.appended(id(1, 1), 10, "big", None);
        assert!(p.is_full());
        assert_eq!(p.resolve_held(1, None), Some("dropped"));
        assert!(!p.is_full());
        let (writes, held) = p.drain();
        assert_eq!((writes, held), (vec!["big"], Vec::<&str>::new()));
        assert_eq!(p.bytes, 0);
    }
}
