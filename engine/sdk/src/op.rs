//! [`OpFuture`]: the one, non-generic future every asynchronous call returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use crate::error::{Error, code};
use crate::reply::Reply;

/// What an operation produced.
pub type OpResult = Result<Reply, Error>;

/// A function run once when an operation completes.
pub type Callback = Box<dyn FnOnce() + Send + 'static>;

/// The state shared by an [`OpFuture`] and the task that completes it.
pub(crate) struct Shared {
    result: OnceLock<OpResult>,
    state: Mutex<State>,
    cond: Condvar,
    /// The task running the operation, woken when the operation completes
    /// otherwise (cancelled): it then drops the operation's future.
    task: AtomicWaker,
}

#[derive(Default)]
struct State {
    /// Set after the callback (if any) returned: waiters and pollers see the
    /// future complete only then, so one that frees it after a wait never
    /// races its callback.
    done: bool,
    /// Threads blocked in [`OpFuture::wait`]: completion signals the
    /// condition variable only when there are any (a signal is a syscall).
    waiters: u32,
    callback: Option<Callback>,
    callback_set: bool,
    waker: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            result: OnceLock::new(),
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            task: AtomicWaker::new(),
        })
    }

    /// Stores the result, wakes waiters and runs the callback (on this
    /// thread). Only the first call has an effect; returns whether it was it.
    pub(crate) fn complete(&self, r: OpResult) -> bool {
        if self.result.set(r).is_err() {
            return false;
        }
        // Taking the lock after `set` orders this against a waiter that checked
        // the result under the lock and is about to wait.
        let callback = lock(&self.state).callback.take();
        if let Some(cb) = callback {
            cb();
        }
        let (waker, waiters) = {
            let mut s = lock(&self.state);
            s.done = true;
            (s.waker.take(), s.waiters)
        };
        if waiters > 0 {
            self.cond.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Whether the result is set (completed, cancelled or failed).
    pub(crate) fn is_complete(&self) -> bool {
        self.result.get().is_some()
    }

    /// Runs `fut` as the operation of `guard`: completes the operation with its
    /// result, and stops polling (drops) it as soon as the operation
    /// completed otherwise (cancelled). Completes with [`code::SYS_ERROR`]
    /// when `fut` panics, with [`code::RUNTIME_SHUT_DOWN`] when dropped
    /// before the end.
    pub(crate) async fn drive<F>(guard: CompleteOnDrop, fut: F)
    where
        F: Future<Output = OpResult>,
    {
        let mut fut = std::pin::pin!(fut);
        let r = std::future::poll_fn(|cx| {
            if guard.0.is_complete() {
                return Poll::Ready(None);
            }
            guard.0.task.register(cx.waker());
            // Registered before this check: a cancel in between wakes us.
            if guard.0.is_complete() {
                return Poll::Ready(None);
            }
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(p) => p.map(Some),
                Err(_) => Poll::Ready(Some(Err(Error::new(
                    code::SYS_ERROR,
                    "the operation panicked",
                )))),
            }
        })
        .await;
        if let Some(r) = r {
            guard.0.complete(r);
        }
    }
}

/// Completes the operation with an error when the task that runs it is
/// dropped before finishing (runtime shutdown drops tasks it did not run).
pub(crate) struct CompleteOnDrop(pub(crate) Arc<Shared>);

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        // The task's waker keeps the task (or its slot in the driver) alive,
        // and the operation may outlive it.
        drop(self.0.task.take());
        self.0.complete(Err(Error::new(
            code::RUNTIME_SHUT_DOWN,
            "the runtime was shut down before the operation finished",
        )));
    }
}

/// The pending result of an asynchronous operation.
///
/// It completes exactly once: with the operation's result, with
/// [`code::CANCELLED`] after [`OpFuture::cancel`], or with
/// [`code::RUNTIME_SHUT_DOWN`] when the runtime shuts down first. Wait for it
/// with [`OpFuture::wait`], poll it with [`OpFuture::is_ready`], register one
/// callback with [`OpFuture::on_complete`], or `.await` it from Rust. Cloning
/// is cheap (a reference count); clones observe the same result.
#[derive(Clone)]
pub struct OpFuture {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OpFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpFuture")
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl OpFuture {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> OpFuture {
        OpFuture { shared }
    }

    /// An already completed future.
    pub fn ready(r: OpResult) -> OpFuture {
        let shared = Shared::new();
        shared.complete(r);
        OpFuture { shared }
    }

    /// True once the future completed and its callback (if any) returned.
    /// Never blocks.
    pub fn is_ready(&self) -> bool {
        lock(&self.shared.state).done
    }

    /// The result, once available (also inside the callback). The reference
    /// stays valid (and the value unchanged) for as long as any clone of this
    /// future lives.
    pub fn result(&self) -> Option<&OpResult> {
        self.shared.result.get()
    }

    /// Blocks the calling thread until the future completed and its callback
    /// returned, or `timeout` passes (`None`: no limit). Returns whether it
    /// completed. Must not be called on a thread of the runtime itself, nor
    /// from the future's own callback.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = lock(&self.shared.state);
        loop {
            if s.done {
                return true;
            }
            s.waiters += 1;
            s = match deadline {
                None => self.shared.cond.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        s.waiters -= 1;
                        return false;
                    }
                    self.shared
                        .cond
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            s.waiters -= 1;
        }
    }

    /// Blocks until the result is available and returns a copy of it.
    pub fn wait_result(&self) -> OpResult {
        self.wait(None);
        self.shared
            .result
            .get()
            .cloned()
            .unwrap_or_else(|| Err(Error::new(code::PENDING, "not completed")))
    }

    /// Registers `callback` to run once when the future completes: on the
    /// runtime thread that completes it, or at once on this thread when it
    /// has already completed. At most one callback per operation (clones
    /// share it): a second registration returns an error and drops `callback`.
    pub fn on_complete(&self, callback: Callback) -> Result<(), Error> {
        {
            let mut s = lock(&self.shared.state);
            if s.callback_set {
                return Err(Error::invalid_argument("a callback is already set"));
            }
            s.callback_set = true;
            if self.shared.result.get().is_none() {
                s.callback = Some(callback);
                return Ok(());
            }
        }
        callback();
        Ok(())
    }

    /// Cancels the operation: the future completes with [`code::CANCELLED`]
    /// (its callback runs on this thread) unless it already completed. A
    /// write already sent may still be applied. Returns whether this call
    /// completed it.
    pub fn cancel(&self) -> bool {
        let done = self.shared.complete(Err(Error::new(
            code::CANCELLED,
            "the operation was cancelled",
        )));
        if done {
            // The task running the operation drops its future.
            self.shared.task.wake();
        }
        done
    }
}

impl Future for OpFuture {
    type Output = OpResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<OpResult> {
        let mut s = lock(&self.shared.state);
        if s.done
            && let Some(r) = self.shared.result.get()
        {
            return Poll::Ready(r.clone());
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn callback_fires_once_also_when_cancelled() {
        let shared = Shared::new();
        let f = OpFuture::from_shared(shared.clone());
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        f.on_complete(Box::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        assert!(f.on_complete(Box::new(|| {})).is_err());
        assert!(!f.wait(Some(Duration::from_millis(1))));
        assert!(f.cancel());
        assert!(!shared.complete(Ok(Reply::default())));
        assert!(!f.cancel());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(
            f.wait_result().unwrap_err().code(),
            crate::error::code::CANCELLED
        );
    }

    #[test]
    fn callback_on_completed_future_runs_at_once() {
        let f = OpFuture::ready(Ok(Reply::default()));
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        f.on_complete(Box::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(f.wait(Some(Duration::ZERO)));
    }
}
