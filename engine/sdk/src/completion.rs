//! [`CompletionQueue`]: completed operations handed from the IO threads to
//! one consumer (an event loop, a drain thread), one wake-up per burst.

use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, code};
use crate::op::OpFuture;

/// Completions waiting for their consumer.
///
/// IO threads [`push`](CompletionQueue::push) items (directly, or through
/// [`track`](CompletionQueue::track) when an [`OpFuture`] completes); the
/// consumer takes them all at once with [`drain`](CompletionQueue::drain)
/// or waits for them with [`wait`](CompletionQueue::wait). A push that finds
/// no drain pending calls the `wake` function given to
/// [`CompletionQueue::new`] (on the pushing thread: keep it short and never
/// block in it); later pushes do not until the consumer drained. A burst of
/// completions so costs one wake-up.
///
/// `T` is what the consumer needs to settle one completion (an id, a
/// promise, a token with the future). The queue also counts operations
/// started and not yet drained ([`begin`](CompletionQueue::begin),
/// [`pending`](CompletionQueue::pending)). Cloning is cheap; clones share the
/// queue.
pub struct CompletionQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for CompletionQueue<T> {
    fn clone(&self) -> Self {
        CompletionQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for CompletionQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.inner.state);
        f.debug_struct("CompletionQueue")
            .field("queued", &s.items.len())
            .field("pending", &s.pending)
            .field("closed", &s.closed)
            .finish()
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    /// Signalled for a consumer blocked in [`CompletionQueue::wait`].
    cond: Condvar,
    wake: Box<dyn Fn() + Send + Sync>,
}

struct State<T> {
    items: Vec<T>,
    /// An empty vector with room, swapped in for `items` by a drain.
    spare: Vec<T>,
    /// Set by the push that called `wake`, cleared by a drain.
    wake_pending: bool,
    /// Operations begun and not yet drained.
    pending: usize,
    /// Closed: no operation may begin; a waiting consumer ends once empty.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Send + 'static> CompletionQueue<T> {
    /// A queue that calls `wake` when completions arrive and no drain is
    /// pending. A consumer that blocks in [`CompletionQueue::wait`] needs no
    /// wake function: pass `|| {}`.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        CompletionQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    items: Vec::new(),
                    spare: Vec::new(),
                    wake_pending: false,
                    pending: 0,
                    closed: false,
                }),
                cond: Condvar::new(),
                wake: Box::new(wake),
            }),
        }
    }

    /// Counts one more operation whose completion will be pushed (exactly
    /// once) and returns how many were pending before. Fails with
    /// RUNTIME_SHUT_DOWN once the queue is closed.
    pub fn begin(&self) -> Result<usize, Error> {
        let mut s = lock(&self.inner.state);
        if s.closed {
            return Err(Error::new(
                code::RUNTIME_SHUT_DOWN,
                "the runtime is shut down",
            ));
        }
        s.pending += 1;
        Ok(s.pending - 1)
    }

    /// Queues `item`, the completion of an operation counted by
    /// [`CompletionQueue::begin`], and wakes the consumer unless a drain is
    /// pending already. Takes one lock; runs `wake` on this thread.
    pub fn push(&self, item: T) {
        let (wake, first) = {
            let mut s = lock(&self.inner.state);
            s.items.push(item);
            (
                !std::mem::replace(&mut s.wake_pending, true),
                s.items.len() == 1,
            )
        };
        if first {
            self.inner.cond.notify_one();
        }
        if wake {
            (self.inner.wake)();
        }
    }

    /// Begins an operation and pushes `item` once `f` completes (on the
    /// thread completing it, or here when it already did). Returns how many
    /// operations were pending before. On error (closed queue, a callback
    /// already set on `f`) nothing is counted or pushed; a closed queue
    /// cancels `f`.
    pub fn track(&self, f: &OpFuture, item: T) -> Result<usize, Error> {
        let before = match self.begin() {
            Ok(n) => n,
            Err(e) => {
                f.cancel();
                return Err(e);
            }
        };
        let q = self.clone();
        let r = f.on_complete(Box::new(move || q.push(item)));
        if let Err(e) = r {
            lock(&self.inner.state).pending -= 1;
            return Err(e);
        }
        Ok(before)
    }

    /// Takes every completion queued (in push order) and clears the pending
    /// wake-up, so that the next push wakes the consumer again. Hand the
    /// emptied vector back with [`CompletionQueue::recycle`] to let pushes
    /// reuse its room.
    pub fn drain(&self) -> Vec<T> {
        let mut s = lock(&self.inner.state);
        s.wake_pending = false;
        let spare = std::mem::take(&mut s.spare);
        let items = std::mem::replace(&mut s.items, spare);
        s.pending = s.pending.saturating_sub(items.len());
        items
    }

    /// Keeps `v` (emptied) as room for later pushes.
    pub fn recycle(&self, mut v: Vec<T>) {
        v.clear();
        let mut s = lock(&self.inner.state);
        if s.spare.capacity() < v.capacity() {
            s.spare = v;
        }
    }

    /// Blocks until completions are queued and takes up to `max` of them
    /// (at least one); `None` once the queue is closed and empty.
    pub fn wait(&self, max: usize) -> Option<Vec<T>> {
        let max = max.max(1);
        let mut s = lock(&self.inner.state);
        loop {
            if !s.items.is_empty() {
                s.wake_pending = false;
                let items: Vec<T> = if s.items.len() > max {
                    s.items.drain(..max).collect()
                } else {
                    std::mem::take(&mut s.items)
                };
                s.pending = s.pending.saturating_sub(items.len());
                return Some(items);
            }
            if s.closed {
                return None;
            }
            s = self.inner.cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Operations begun and not yet drained.
    pub fn pending(&self) -> usize {
        lock(&self.inner.state).pending
    }

    /// Refuses new operations ([`CompletionQueue::begin`] fails) and ends a
    /// consumer's [`CompletionQueue::wait`] once the queue is empty.
    /// Completions of operations already begun are still queued.
    pub fn close(&self) {
        lock(&self.inner.state).closed = true;
        self.inner.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting() -> (CompletionQueue<u32>, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let q = CompletionQueue::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        (q, wakes)
    }

    #[test]
    fn a_burst_wakes_the_consumer_once() {
        let (q, wakes) = counting();
        for i in 0..3 {
            q.begin().unwrap();
            q.push(i);
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(q.pending(), 3);
        let items = q.drain();
        assert_eq!(items, vec![0, 1, 2]);
        assert_eq!(q.pending(), 0);
        q.recycle(items);
        q.push(7);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(q.drain(), vec![7]);
    }

    #[test]
    fn tracked_futures_are_queued_when_they_complete() {
        let (q, wakes) = counting();
        let done = OpFuture::ready(Ok(Reply::default()));
        assert_eq!(q.track(&done, 1).unwrap(), 0);
        assert_eq!(q.drain(), vec![1]);
        assert!(q.track(&done, 2).is_err(), "one callback per future");
        assert_eq!(q.pending(), 0);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn wait_takes_batches_and_ends_when_closed_and_empty() {
        let q: CompletionQueue<u32> = CompletionQueue::new(|| {});
        let q2 = q.clone();
        let consumer = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(batch) = q2.wait(2) {
                assert!(batch.len() <= 2);
                got.extend(batch);
            }
            got
        });
        for i in 0..5 {
            q.begin().unwrap();
            q.push(i);
        }
        q.close();
        assert_eq!(
            q.begin().unwrap_err().code(),
            code::RUNTIME_SHUT_DOWN,
            "closed"
        );
        assert_eq!(consumer.join().unwrap(), vec![0, 1, 2, 3, 4]);
        let pending = OpFuture::from_shared(crate::op::Shared::new());
        assert!(q.track(&pending, 9).is_err());
        assert!(pending.is_ready(), "a closed queue cancels what it refuses");
    }
}
