//! [`Runtime`]: owns the async runtime every client and embedded server of a
//! process (or of a binding) runs on.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

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
    shutdown_tx: watch::Sender<bool>,
    servers: Mutex<Vec<Weak<ServerInner>>>,
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
            return Err(Error::invalid_argument(format!(
                "worker_threads {worker_threads} is above {MAX_WORKER_THREADS}"
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
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Runtime {
            inner: Arc::new(RtInner {
                handle: rt.handle().clone(),
                rt: Mutex::new(Some(rt)),
                pid: std::process::id(),
                shutdown_tx,
                servers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Whether [`Runtime::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self.inner.shutdown_tx.borrow()
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

    pub(crate) fn register_server(&self, s: &Arc<ServerInner>) {
        let mut v = lock(&self.inner.servers);
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(s));
    }

    /// Runs `fut` on the runtime and returns its [`OpFuture`]. The future
    /// completes with the result, or with an error when the runtime cannot
    /// run it (shut down, forked) or shuts down first.
    pub(crate) fn spawn_op<F>(&self, fut: F) -> OpFuture
    where
        F: Future<Output = OpResult> + Send + 'static,
    {
        let shared = Shared::new();
        if let Err(e) = self.check() {
            shared.complete(Err(e));
            return OpFuture::from_shared(shared);
        }
        let guard = CompleteOnDrop(shared.clone());
        let mut shutdown = self.inner.shutdown_tx.subscribe();
        let task = self.inner.handle.spawn(async move {
            let guard = guard;
            let r = tokio::select! {
                r = fut => r,
                _ = shutdown.wait_for(|s| *s) => Err(Error::new(
                    code::RUNTIME_SHUT_DOWN,
                    "the runtime was shut down before the operation finished",
                )),
            };
            guard.0.complete(r);
        });
        shared.set_abort(task.abort_handle());
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
        let was = self.inner.shutdown_tx.send_replace(true);
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
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
