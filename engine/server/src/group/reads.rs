//! Linearizable and lease reads of a group: the reads of a turn share one
//! ReadIndex round, and a confirmed round is served once the state machine
//! has applied up to the round's read index.

use std::collections::HashMap;

/// The reads that wait for ReadIndex rounds. `T` is one read (the request and
/// whom to answer).
pub(crate) struct Reads<T> {
    /// Reads that arrived this turn; one round starts for all of them.
    batch: Vec<T>,
    /// Rounds raft has not answered yet, by context.
    started: HashMap<u64, Vec<T>>,
    /// Confirmed rounds by read index, waiting for the apply to reach it.
    waiting: Vec<(u64, Vec<T>)>,
    /// Context of the last round started.
    next_ctx: u64,
}

impl<T> Reads<T> {
    pub(crate) fn new() -> Reads<T> {
        Reads {
            batch: Vec::new(),
            started: HashMap::new(),
            waiting: Vec::new(),
            next_ctx: 0,
        }
    }

    /// Adds a read to the next round.
    pub(crate) fn push(&mut self, read: T) {
        self.batch.push(read);
    }

    /// The reads that arrived since the last round, with a new round's context.
    pub(crate) fn take_batch(&mut self) -> Option<(u64, Vec<T>)> {
        if self.batch.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        Some((self.next_ctx, std::mem::take(&mut self.batch)))
    }

    /// Raft took the round `ctx` for `batch`.
    pub(crate) fn started(&mut self, ctx: u64, batch: Vec<T>) {
        self.started.insert(ctx, batch);
    }

    /// Raft confirmed round `ctx` at `read_index`: returns its reads when
    /// `applied` already reaches it, else keeps them until [`Self::release`].
    pub(crate) fn confirmed(&mut self, ctx: u64, read_index: u64, applied: u64) -> Option<Vec<T>> {
        let batch = self.started.remove(&ctx)?;
        if read_index <= applied {
            return Some(batch);
        }
        self.waiting.push((read_index, batch));
        None
    }

    /// Raft refused round `ctx` (leadership lost): its reads, to refuse.
    pub(crate) fn refused(&mut self, ctx: u64) -> Option<Vec<T>> {
        self.started.remove(&ctx)
    }

    /// Hands every read whose round's read index is at most `applied` to `serve`.
    pub(crate) fn release(&mut self, applied: u64, mut serve: impl FnMut(T)) {
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].0 <= applied {
                let (_, batch) = self.waiting.swap_remove(i);
                batch.into_iter().for_each(&mut serve);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reads;

    #[test]
    fn one_round_per_turn_with_a_new_context() {
        let mut r = Reads::new();
        assert!(r.take_batch().is_none());
        r.push("a");
        r.push("b");
        assert_eq!(r.take_batch(), Some((1, vec!["a", "b"])));
        assert!(r.take_batch().is_none());
        r.push("c");
        assert_eq!(r.take_batch(), Some((2, vec!["c"])));
    }

    #[test]
    fn a_confirmed_round_waits_for_the_apply_to_reach_its_index() {
        let mut r = Reads::new();
        r.started(1, vec!["now"]);
        r.started(2, vec!["at 10"]);
        r.started(3, vec!["at 12"]);
        r.started(4, vec!["refused"]);
        assert_eq!(r.confirmed(1, 5, 5), Some(vec!["now"]));
        assert_eq!(r.confirmed(2, 10, 5), None);
        assert_eq!(r.confirmed(3, 12, 5), None);
        assert_eq!(r.refused(4), Some(vec!["refused"]));
        // An unknown or answered round is ignored.
        assert_eq!(r.confirmed(1, 5, 5), None);
        let mut served = Vec::new();
        r.release(9, |x| served.push(x));
        assert!(served.is_empty());
        r.release(11, |x| served.push(x));
        assert_eq!(served, vec!["at 10"]);
        r.release(12, |x| served.push(x));
        assert_eq!(served, vec!["at 10", "at 12"]);
    }
}
