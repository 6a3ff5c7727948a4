//! [`Runtime`]: owns the async runtime every client and embedded server of a
//! process (or of a binding) runs on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Notify, watch};

use crate::error::{Error, code};
use crate::op::{CompleteOnDrop, OpFuture, OpResult, Shared};
use crate::server::ServerInner;

/// Largest number of IO threads a runtime accepts.
pub const MAX_WORKER_THREADS: u32 = 256;

/// Grace a runtime shutdown gives each embedded server still running.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(1);

/// The async runtime (a multi-thread tokio runtime) and its lifecycle.
///
/// Cloning is cheap and clones share the runtime. It runs until
/// [`Runtime::shutdown`] (or until the last clone, client and server using it
/// are dropped, which shuts it down without waiting). After `fork()` every
/// call made through it in the child fails with [`code::FORKED`] instead of
/// hanging on threads that do not exist there.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RtInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("pid", &self.inner.pid)
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

struct RtInner {
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    pid: u32,
    /// Set by [`Runtime::shutdown`]; read by every call ([`Runtime::check`]).
    shut_down: AtomicBool,
    /// Stops the tasks of [`Runtime::spawn_op`] operations at shutdown.
    shutdown_tx: watch::Sender<bool>,
    servers: Mutex<Vec<Weak<ServerInner>>>,
    submissions: Arc<Submissions>,
    /// Disconnected when the operation driver ([`run_ops`]) has dropped the
    /// operations it ran (so that they completed): shutdown waits for it.
    driver_done: Mutex<Option<mpsc::Receiver<()>>>,
}

/// An operation the driver runs: completes its [`Shared`] when it ends, or
/// with [`code::RUNTIME_SHUT_DOWN`] when dropped before.
type Op = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts one submitted operation on a runtime thread: builds the operation
/// for the driver to run, or spawns a task of its own and returns `None`.
/// Dropping a job without running it completes its operation with
/// [`code::RUNTIME_SHUT_DOWN`].
type Job = Box<dyn FnOnce(&watch::Receiver<bool>) -> Option<Op> + Send>;

/// Operations submitted to the runtime, started in batches by one task of
/// the runtime ([`run_ops`]) that also runs them. A caller that submits many
/// operations in a row pays a queue push each, and the runtime is woken once
/// per batch instead of once per operation.
struct Submissions {
    state: Mutex<SubmissionState>,
    notify: Notify,
}

#[derive(Default)]
struct SubmissionState {
    jobs: Vec<Job>,
    /// Set at shutdown: later submissions complete with RUNTIME_SHUT_DOWN.
    closed: bool,
}

impl Submissions {
    /// Queues `job`, or hands it back when the runtime is shut down.
    fn push(&self, job: Job) -> Result<(), Job> {
        let first = {
            let mut s = lock(&self.state);
            if s.closed {
                return Err(job);
            }
            s.jobs.push(job);
            s.jobs.len() == 1
        };
        if first {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Closes the queue and returns the jobs not started.
    fn close(&self) -> Vec<Job> {
        let mut s = lock(&self.state);
        s.closed = true;
        std::mem::take(&mut s.jobs)
    }
}

/// Most operations the driver completes in one poll before it lets the
/// worker run other tasks.
const DRIVER_BUDGET: usize = 1024;

/// The operation driver: starts submitted operations, a batch per wake-up,
/// and runs them all in this one task (a [`FuturesUnordered`]) rather than a
/// task each: no task allocation, scheduling or shutdown subscription per
/// operation, and a burst of completions wakes this task once. When the
/// queue is closed (shutdown) it drops the operations still running, which
/// completes them with [`code::RUNTIME_SHUT_DOWN`], then drops `done`.
async fn run_ops(subs: Arc<Submissions>, shutdown: watch::Receiver<bool>, done: mpsc::Sender<()>) {
    let mut ops: FuturesUnordered<Op> = FuturesUnordered::new();
    let mut batch: Vec<Job> = Vec::new();
    let mut notified = std::pin::pin!(subs.notify.notified());
    std::future::poll_fn(|cx| {
        while notified.as_mut().poll(cx).is_ready() {
            notified.set(subs.notify.notified());
            let closed = {
                let mut s = lock(&subs.state);
                std::mem::swap(&mut batch, &mut s.jobs);
                s.closed
            };
            for job in batch.drain(..) {
                if let Some(op) = job(&shutdown) {
                    ops.push(op);
                }
            }
            if closed {
                return Poll::Ready(());
            }
        }
        for _ in 0..DRIVER_BUDGET {
            match ops.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    drop(ops);
    drop(done);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for RtInner {
    fn drop(&mut self) {
        let rt = lock(&self.rt).take();
        if let Some(rt) = rt {
            if std::process::id() != self.pid {
                // The worker threads do not exist in a forked child: joining
                // them would hang and their state may be locked. Leak it.
                std::mem::forget(rt);
            } else {
                rt.shutdown_background();
            }
        }
    }
}

impl Runtime {
    /// Starts a runtime with `worker_threads` IO threads (0: one per CPU, at
    /// most 4). Costs the threads' creation.
    pub fn new(worker_threads: u32) -> Result<Runtime, Error> {
        if worker_threads > MAX_WORKER_THREADS {
            return Err(Error::invalid_argument(crate::args::out_of_range(
                "worker_threads",
                0,
                u64::from(MAX_WORKER_THREADS),
                u64::from(worker_threads),
            )));
        }
        let threads = if worker_threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2)
        } else {
            worker_threads as usize
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("dongting-io")
            .enable_all()
            .build()
            .map_err(|e| Error::new(code::RESOURCE, format!("cannot start the runtime: {e}")))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let submissions = Arc::new(Submissions {
            state: Mutex::new(SubmissionState::default()),
            notify: Notify::new(),
        });
        let (done_tx, done_rx) = mpsc::channel();
        rt.spawn(run_ops(submissions.clone(), shutdown_rx, done_tx));
        Ok(Runtime {
            inner: Arc::new(RtInner {
                handle: rt.handle().clone(),
                rt: Mutex::new(Some(rt)),
                pid: std::process::id(),
                shut_down: AtomicBool::new(false),
                shutdown_tx,
                servers: Mutex::new(Vec::new()),
                submissions,
                driver_done: Mutex::new(Some(done_rx)),
            }),
        })
    }

    /// Whether [`Runtime::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    /// Ok when the runtime may run operations: not shut down and in the
    /// process that created it.
    pub fn check(&self) -> Result<(), Error> {
        if std::process::id() != self.inner.pid {
            return Err(Error::new(
                code::FORKED,
                "the runtime was created in the parent process (fork); create a new one in this process",
            ));
        }
        if self.is_shut_down() {
            return Err(Error::new(
                code::RUNTIME_SHUT_DOWN,
                "the runtime is shut down",
            ));
        }
        Ok(())
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn register_server(&self, s: &Arc<ServerInner>) {
        let mut v = lock(&self.inner.servers);
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(s));
    }

    /// Runs `fut` on the runtime, in a task of its own, and returns its
    /// [`OpFuture`]. The future completes with the result, or with an error
    /// when the runtime cannot run it (shut down, forked) or shuts down
    /// first. For operations that may hold their thread a while (starting a
    /// node); others use [`Runtime::submit_op`].
    pub(crate) fn spawn_op<F>(&self, fut: F) -> OpFuture
    where
        F: Future<Output = OpResult> + Send + 'static,
    {
        self.submit(move |guard, shutdown| {
            let mut shutdown = shutdown.clone();
            // Boxed apart from the task: the task itself stays small (tasks
            // are allocated cache-aligned, which is slow for large ones).
            let op = Box::pin(Shared::drive(guard, fut));
            tokio::spawn(async move {
                tokio::select! {
                    _ = op => {}
                    // Dropping the operation completes it with RUNTIME_SHUT_DOWN.
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            });
            None
        })
    }

    /// Like [`Runtime::spawn_op`] for the future `make()` returns, which is
    /// built and run by the runtime's operation driver (one task running
    /// every such operation). Called from a thread outside the runtime, this
    /// only queues `make` (cheap: no task allocation or thread wake-up on the
    /// caller's thread); the driver starts queued operations in batches. An
    /// operation cancelled before it started never starts; one cancelled
    /// while running is dropped at once.
    pub(crate) fn submit_op<M, F>(&self, make: M) -> OpFuture
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = OpResult> + Send + 'static,
    {
        self.submit(move |guard, _| {
            // A panic (building the operation; one while running it is caught
            // in `drive`) ends this operation only (its guard completes it),
            // not the driver and the operations it runs.
            let op: Op = Box::pin(
                std::panic::AssertUnwindSafe(async move { Shared::drive(guard, make()).await })
                    .catch_unwind()
                    .map(drop),
            );
            Some(op)
        })
    }

    /// Queues `start`, which runs on a runtime thread unless the operation
    /// completed before (cancelled, or the runtime shut down).
    fn submit<S>(&self, start: S) -> OpFuture
    where
        S: FnOnce(CompleteOnDrop, &watch::Receiver<bool>) -> Option<Op> + Send + 'static,
    {
        let shared = Shared::new();
        if let Err(e) = self.check() {
            shared.complete(Err(e));
            return OpFuture::from_shared(shared);
        }
        let guard = CompleteOnDrop(shared.clone());
        let job: Job = Box::new(move |shutdown: &watch::Receiver<bool>| {
            if guard.0.is_complete() {
                return None; // cancelled before it started
            }
            start(guard, shutdown)
        });
        if let Err(job) = self.inner.submissions.push(job) {
            drop(job); // shut down meanwhile: completes with RUNTIME_SHUT_DOWN
        }
        OpFuture::from_shared(shared)
    }

    /// Shuts the runtime down: operations in flight complete with
    /// [`code::RUNTIME_SHUT_DOWN`] (their callbacks run), embedded servers
    /// still running are stopped (1 s grace each), then the IO threads are
    /// stopped, waiting up to `timeout` for them. Later calls fail with
    /// [`code::RUNTIME_SHUT_DOWN`]. Idempotent. Blocks; called from a thread
    /// of the runtime itself (a callback) it does not wait.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        if std::process::id() != self.inner.pid {
            return Err(Error::new(
                code::FORKED,
                "the runtime was created in the parent process (fork)",
            ));
        }
        let was = self.inner.shut_down.swap(true, Ordering::AcqRel);
        self.inner.shutdown_tx.send_replace(true);
        // Operations submitted but not started complete here, on this thread.
        drop(self.inner.submissions.close());
        // The driver drops (completes) the operations it runs.
        self.inner.submissions.notify.notify_one();
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        if !in_runtime && let Some(done) = lock(&self.inner.driver_done).take() {
            // Returns when the driver dropped its end (or after `timeout`).
            let _ = done.recv_timeout(timeout);
        }
        if !was && !in_runtime {
            let servers: Vec<Arc<ServerInner>> = lock(&self.inner.servers)
                .drain(..)
                .filter_map(|w| w.upgrade())
                .collect();
            for s in servers {
                self.inner.handle.block_on(s.stop_inner(SERVER_STOP_GRACE));
            }
        }
        let rt = lock(&self.inner.rt).take();
        if let Some(rt) = rt {
            if in_runtime {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(timeout);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    /// Occupies the runtime's only worker until the returned sender is used
    /// or dropped (or `limit` passes), so that submissions stay queued.
    fn block_worker(rt: &Runtime, limit: Duration) -> mpsc::Sender<()> {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        rt.handle().spawn(async move {
            let _ = started_tx.send(());
            let _ = release_rx.recv_timeout(limit);
        });
        started_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the blocking task started");
        release_tx
    }

    #[test]
    fn queued_operations_run_when_the_runtime_is_free_and_cancelled_ones_never_start() {
        let rt = Runtime::new(1).expect("runtime");
        let release = block_worker(&rt, Duration::from_secs(5));
        let started = Arc::new(AtomicBool::new(false));
        let s2 = started.clone();
        let cancelled = rt.submit_op(move || {
            s2.store(true, Ordering::SeqCst);
            async { Ok(Reply::default()) }
        });
        let queued: Vec<OpFuture> = (0..100u64)
            .map(|i| {
                rt.submit_op(move || async move {
                    Ok(Reply {
                        index: i,
                        ..Reply::default()
                    })
                })
            })
            .collect();
        assert!(!queued[0].is_ready(), "the only worker is busy");
        assert!(cancelled.cancel());
        drop(release);
        for (i, f) in queued.iter().enumerate() {
            assert_eq!(f.wait_result().expect("result").index, i as u64);
        }
        assert_eq!(cancelled.wait_result().unwrap_err().code(), code::CANCELLED);
        assert!(
            !started.load(Ordering::SeqCst),
            "a cancelled call never starts"
        );
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
    }

    #[test]
    fn shutdown_completes_operations_not_started() {
        let rt = Runtime::new(1).expect("runtime");
        let _release = block_worker(&rt, Duration::from_millis(300));
        let f = rt.submit_op(|| async { Ok(Reply::default()) });
        assert!(!f.is_ready());
        rt.shutdown(Duration::from_secs(2)).expect("shutdown");
        assert_eq!(f.wait_result().unwrap_err().code(), code::RUNTIME_SHUT_DOWN);
        let later = rt.submit_op(|| async { Ok(Reply::default()) });
        assert_eq!(
            later.wait_result().unwrap_err().code(),
            code::RUNTIME_SHUT_DOWN
        );
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Submits an operation that never finishes; returns it and the flag its
    /// future sets when dropped.
    fn pending_forever(rt: &Runtime) -> (OpFuture, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let f = rt.submit_op(move || async move {
            let _flag = flag;
            std::future::pending::<OpResult>().await
        });
        (f, dropped)
    }

    fn wait_for_flag(flag: &AtomicBool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !flag.load(Ordering::SeqCst) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn a_running_operation_cancelled_is_dropped_and_the_others_go_on() {
        let rt = Runtime::new(1).expect("runtime");
        let (f, dropped) = pending_forever(&rt);
        let (other, other_dropped) = pending_forever(&rt);
        let done = rt.submit_op(|| async { Ok(Reply::default()) });
        done.wait_result().expect("a later operation completes");
        assert!(!dropped.load(Ordering::SeqCst), "still running");
        assert!(f.cancel());
        assert_eq!(f.wait_result().unwrap_err().code(), code::CANCELLED);
        assert!(wait_for_flag(&dropped), "the cancelled future is dropped");
        assert!(!other_dropped.load(Ordering::SeqCst));
        assert!(!other.is_ready());
        let again = rt.submit_op(|| async { Ok(Reply::default()) });
        again
            .wait_result()
            .expect("the driver still runs operations");
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
        assert_eq!(
            other.wait_result().unwrap_err().code(),
            code::RUNTIME_SHUT_DOWN
        );
        assert!(other_dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn a_panicking_operation_completes_and_the_driver_goes_on() {
        let rt = Runtime::new(1).expect("runtime");
        let (other, _) = pending_forever(&rt);
        let panics = rt.submit_op(|| async { panic!("an operation panicked") });
        assert_eq!(panics.wait_result().unwrap_err().code(), code::SYS_ERROR);
        let later = rt.submit_op(|| async {
            Ok(Reply {
                index: 3,
                ..Reply::default()
            })
        });
        assert_eq!(later.wait_result().expect("result").index, 3);
        assert!(!other.is_ready(), "the other operations still run");
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
        assert_eq!(
            other.wait_result().unwrap_err().code(),
            code::RUNTIME_SHUT_DOWN
        );
    }

    #[test]
    fn shutdown_completes_running_operations_before_it_returns() {
        let rt = Runtime::new(2).expect("runtime");
        let ops: Vec<(OpFuture, Arc<AtomicBool>)> = (0..50).map(|_| pending_forever(&rt)).collect();
        let spawned = rt.spawn_op(std::future::pending());
        rt.submit_op(|| async { Ok(Reply::default()) })
            .wait_result()
            .expect("the driver started the operations queued before");
        rt.shutdown(Duration::from_secs(2)).expect("shutdown");
        for (f, dropped) in &ops {
            assert!(f.is_ready(), "completed when shutdown returned");
            assert_eq!(f.wait_result().unwrap_err().code(), code::RUNTIME_SHUT_DOWN);
            assert!(dropped.load(Ordering::SeqCst));
        }
        assert_eq!(
            spawned.wait_result().unwrap_err().code(),
            code::RUNTIME_SHUT_DOWN
        );
    }

    #[test]
    fn operations_submitted_on_a_runtime_thread_run() {
        let rt = Runtime::new(2).expect("runtime");
        let rt2 = rt.clone();
        let outer = rt.submit_op(move || async move {
            // A call made from a runtime thread (as a callback would).
            rt2.submit_op(|| async {
                Ok(Reply {
                    index: 7,
                    ..Reply::default()
                })
            })
            .await
        });
        assert_eq!(outer.wait_result().expect("result").index, 7);
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
    }
}
