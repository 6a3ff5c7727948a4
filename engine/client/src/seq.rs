//! Sequence numbers of writes: the window of numbers in flight and when a
//! retry may take a new one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dongting_net::RpcError;

use crate::lock;

/// The sequence numbers of the writes in flight, as a window: from the oldest
/// number still in flight, one done flag per number issued since. Numbers are
/// issued in order and mostly end in order, so issuing, ending and asking for
/// the oldest are all constant time.
#[derive(Debug)]
pub(crate) struct SeqWindow {
    /// The oldest number in flight, or the next to issue when none is.
    base: u64,
    /// From `base` on: whether each issued number has ended. Never starts
    /// with `true` (a finished prefix is popped), so it is empty exactly
    /// when no write is in flight.
    done: VecDeque<bool>,
}

impl SeqWindow {
    pub(crate) fn new(first: u64) -> SeqWindow {
        SeqWindow {
            base: first,
            done: VecDeque::new(),
        }
    }

    pub(crate) fn issue(&mut self) -> u64 {
        let seq = self.base + self.done.len() as u64;
        self.done.push_back(false);
        seq
    }

    pub(crate) fn end(&mut self, seq: u64) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        match self.done.get_mut(i as usize) {
            Some(d) => *d = true,
            None => return,
        }
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.base += 1;
        }
    }

    /// The oldest number in flight: every write below it has ended.
    pub(crate) fn oldest(&self) -> u64 {
        self.base
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.done.is_empty()
    }
}

/// Ends a write's current sequence number on drop.
pub(crate) struct SeqRelease<'a> {
    pub(crate) in_flight: &'a Mutex<SeqWindow>,
    pub(crate) current: &'a AtomicU64,
}

impl Drop for SeqRelease<'_> {
    fn drop(&mut self) {
        let seq = self.current.load(Ordering::Relaxed);
        if seq != 0 {
            lock(self.in_flight).end(seq);
        }
    }
}

/// When a write's retry may take a fresh sequence number.
///
/// An attempt the server certainly did not execute (a retryable error) may be
/// retried under a new number. Once one attempt's fate is unknown (the
/// connection failed after the request was sent), every later attempt must
/// carry that attempt's number, even when a later one is refused outright
/// (say NOT_RAFT_LEADER from a follower while a new leader is elected): the
/// unknown attempt may still be committed, and only the same number lets the
/// state machine answer the retry from its session table instead of applying
/// the write twice.
#[derive(Debug, Default)]
pub(crate) struct SeqPolicy {
    /// Set once an attempt may have run (an atomic only so that a shared
    /// reference does: the call's future stays `Send`).
    pinned: AtomicBool,
}

impl SeqPolicy {
    /// Records an attempt's failure; true when the next attempt may be
    /// encoded with a new sequence number.
    pub(crate) fn after(&self, e: &RpcError) -> bool {
        if !e.retryable() {
            self.pinned.store(true, Ordering::Relaxed);
        }
        !self.pinned()
    }

    /// Whether an attempt may have run.
    pub(crate) fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }
}
