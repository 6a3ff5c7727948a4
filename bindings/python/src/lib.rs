//! `dongting._native`: the thin pyo3 projection of `dongting-sdk` under the
//! `dongting` Python package. Semantics live in the SDK; this module converts
//! arguments and results, releases the GIL around every blocking call, and
//! hands asynchronous results to a Python callable on the IO thread that
//! completes them. The Python package (`python/dongting`) builds the public
//! API on top.

#[cfg(unix)]
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::fd::AsRawFd;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dongting_sdk::{
    EmbeddedServer, Error, KvClient, OpFuture, Reply, Runtime, Watch, WatchEvent, WatchEventKind,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

/// The Python exception for an SDK error, built by
/// `dongting._errors.error_from_code` so the class hierarchy lives in Python.
fn py_error(py: Python<'_>, e: &Error) -> PyErr {
    static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let factory = FACTORY.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("dongting._errors")?
            .getattr("error_from_code")?
            .unbind())
    });
    let factory = match factory {
        Ok(f) => f,
        Err(err) => return err,
    };
    match factory.call1(
        py,
        (
            e.code(),
            e.message(),
            e.retryable(),
            e.leader_hint().map(str::to_string),
        ),
    ) {
        Ok(exc) => PyErr::from_value(exc.into_bound(py)),
        Err(err) => err,
    }
}

/// `(kind, index, created, deadline_ms, nodes, codes, token, more)`, `nodes` and `codes`
/// tuples (the shared empty tuple when empty, as for most writes, so that a
/// reply allocates little for the garbage collector to track); each node is
/// `(key, value, kind, create_index, create_time_ms, update_index,
/// update_time_ms, ttl_deadline_ms, ttl_owner)`.
fn reply_tuple<'py>(py: Python<'py>, r: &Reply) -> PyResult<Bound<'py, PyTuple>> {
    let nodes = PyTuple::new(
        py,
        r.nodes.iter().map(|n| {
            (
                PyBytes::new(py, &n.key),
                PyBytes::new(py, &n.value),
                n.kind as u32,
                n.create_index,
                n.create_time_ms,
                n.update_index,
                n.update_time_ms,
                n.ttl_deadline_ms,
                n.ttl_owner,
            )
        }),
    )?;
    let codes = PyTuple::new(py, &r.codes)?;
    (
        r.kind as u32,
        r.index,
        r.created,
        r.deadline_ms,
        nodes,
        codes,
        r.token,
        r.more,
    )
        .into_pyobject(py)
}

fn to_py(py: Python<'_>, r: Result<Reply, Error>) -> PyResult<Py<PyAny>> {
    match r {
        Ok(r) => Ok(reply_tuple(py, &r)?.into_any().unbind()),
        Err(e) => Err(py_error(py, &e)),
    }
}

/// Completed operations waiting for the event loop (the SDK's
/// [`dongting_sdk::CompletionQueue`]): each with the `asyncio.Future` it
/// settles and the function converting its reply.
///
/// IO threads push without the GIL; only the push that finds no drain pending
/// wakes the loop, which then calls `drain()`. The wake-up writes a byte to a
/// socket the loop watches (`fileno()`, after `wake_by_fd()`), so IO threads
/// never wait for the GIL; without it (a loop that cannot watch sockets) the
/// push takes the GIL to call `wake()`, which must schedule `drain()`. A
/// burst of completions so costs one wake-up; `drain()` settles them all on
/// the loop thread.
#[pyclass(frozen, module = "dongting._native")]
struct CompletionQueue {
    queue: dongting_sdk::CompletionQueue<Completion>,
    waker: Arc<Waker>,
}

/// How the queue wakes the loop: the socket pair, or the `wake` callable.
struct Waker {
    wake: Py<PyAny>,
    wake_fd: AtomicBool,
    #[cfg(unix)]
    pair: Option<(UnixStream, UnixStream)>,
}

struct Completion {
    fut: Py<PyAny>,
    conv: Py<PyAny>,
    out: Outcome,
}

/// What a completion settles its future with.
enum Outcome {
    /// A call's reply (read from the future once it completed).
    Op(OpFuture),
    /// A watch wait's result: an event, or None when the wait timed out.
    Watch(Result<Option<WatchEvent>, Error>),
    /// A watch registration: settles with `conv(NativeWatch)`.
    Opened(OpFuture),
}

impl Waker {
    /// Called by the queue (on an IO thread) when completions arrive and no
    /// drain is pending.
    fn wake(&self) {
        #[cfg(unix)]
        if self.wake_fd.load(Ordering::Acquire)
            && let Some((_, w)) = &self.pair
        {
            // Non-blocking: a full buffer already holds a pending wake-up.
            let _ = (&*w).write(&[1]);
            return;
        }
        // Skipped when the interpreter is finalizing: nobody waits then.
        let _ = Python::try_attach(|py| {
            if let Err(e) = self.wake.call0(py) {
                e.write_unraisable(py, None);
            }
        });
    }

    /// Empties the wake-up socket. Called before the pending flag is
    /// cleared, so a byte written for a later push is never lost.
    fn clear_wakeups(&self) {
        #[cfg(unix)]
        if let Some((r, _)) = &self.pair {
            let mut buf = [0u8; 256];
            while let Ok(n) = (&*r).read(&mut buf) {
                if n < buf.len() {
                    break;
                }
            }
        }
    }
}

/// Sets `fut`'s outcome unless it is done (cancelled) already.
fn settle(py: Python<'_>, c: &Completion) -> PyResult<()> {
    let fut = c.fut.bind(py);
    let outcome = match &c.out {
        Outcome::Op(op) => match op.result() {
            Some(Ok(r)) => reply_tuple(py, r).and_then(|t| c.conv.bind(py).call1((t,))),
            Some(Err(e)) => Err(py_error(py, e)),
            None => Err(PyRuntimeError::new_err(
                "the operation completed without a result",
            )),
        },
        Outcome::Watch(Ok(Some(e))) => {
            watch_event_tuple(py, e).and_then(|t| c.conv.bind(py).call1((t,)))
        }
        Outcome::Watch(Ok(None)) => c.conv.bind(py).call1((py.None(),)),
        Outcome::Watch(Err(e)) => Err(py_error(py, e)),
        Outcome::Opened(op) => match op.result() {
            Some(Ok(Reply { watch: Some(w), .. })) => {
                Py::new(py, NativeWatch { w: w.clone() }).and_then(|w| c.conv.bind(py).call1((w,)))
            }
            Some(Ok(_)) => Err(py_error(
                py,
                &Error::new(
                    dongting_sdk::code::WRONG_RESULT_KIND,
                    "the reply holds no watch",
                ),
            )),
            Some(Err(e)) => Err(py_error(py, e)),
            None => Err(PyRuntimeError::new_err(
                "the operation completed without a result",
            )),
        },
    };
    // One call per future: a future cancelled meanwhile (rare) refuses the
    // outcome with InvalidStateError, which is then dropped.
    let set = match outcome {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)),
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
    };
    match set {
        Err(e) if fut.call_method0(intern!(py, "done"))?.is_truthy()? => {
            drop(e);
            Ok(())
        }
        r => r.map(drop),
    }
}

#[pymethods]
impl CompletionQueue {
    /// `wake()` is called (from an IO thread, with the GIL) when completions
    /// arrive and no drain is pending, unless `wake_by_fd()` was called; it
    /// must schedule `drain()`.
    #[new]
    fn new(wake: Py<PyAny>) -> Self {
        #[cfg(unix)]
        let pair = UnixStream::pair()
            .ok()
            .filter(|(r, w)| r.set_nonblocking(true).is_ok() && w.set_nonblocking(true).is_ok());
        let waker = Arc::new(Waker {
            wake,
            wake_fd: AtomicBool::new(false),
            #[cfg(unix)]
            pair,
        });
        let w = waker.clone();
        CompletionQueue {
            queue: dongting_sdk::CompletionQueue::new(move || w.wake()),
            waker,
        }
    }

    /// The socket that becomes readable when `drain()` is due, or None where
    /// there is none. The queue owns it; watch it only for reading.
    fn fileno(&self) -> Option<i64> {
        #[cfg(unix)]
        if let Some((r, _)) = &self.waker.pair {
            return Some(i64::from(r.as_raw_fd()));
        }
        None
    }

    /// From now on, wake the loop through `fileno()` instead of `wake()`.
    fn wake_by_fd(&self) -> PyResult<()> {
        if self.fileno().is_none() {
            return Err(PyRuntimeError::new_err("this queue has no wake-up socket"));
        }
        self.waker.wake_fd.store(true, Ordering::Release);
        Ok(())
    }

    /// Settles the future of every completion since the last drain (a
    /// future already done, i.e. cancelled, is left alone) and returns how
    /// many completions there were. An error setting one future is reported
    /// as unraisable and does not stop the others.
    fn drain(&self, py: Python<'_>) -> usize {
        self.waker.clear_wakeups();
        let mut items = self.queue.drain();
        let n = items.len();
        for c in items.drain(..) {
            if let Err(e) = settle(py, &c) {
                e.write_unraisable(py, Some(c.fut.bind(py)));
            }
        }
        // Kept for a later drain: IO threads then push without growing it.
        self.queue.recycle(items);
        n
    }
}

/// Queues `op` on `queue` to settle `fut` (with `conv(reply)` or the error)
/// once it completes.
fn deliver(
    py: Python<'_>,
    op: OpFuture,
    queue: &CompletionQueue,
    fut: Py<PyAny>,
    conv: Py<PyAny>,
) -> PyResult<()> {
    let c = Completion {
        fut,
        conv,
        out: Outcome::Op(op.clone()),
    };
    queue
        .queue
        .track(&op, c)
        .map(drop)
        .map_err(|e| py_error(py, &e))
}

/// The IO threads every client and server of this process runs on.
#[pyclass(frozen, module = "dongting._native")]
struct NativeRuntime {
    rt: Runtime,
}

#[pymethods]
impl NativeRuntime {
    #[new]
    #[pyo3(signature = (worker_threads = 0))]
    fn new(py: Python<'_>, worker_threads: u32) -> PyResult<Self> {
        Runtime::new(worker_threads)
            .map(|rt| NativeRuntime { rt })
            .map_err(|e| py_error(py, &e))
    }

    /// Completes pending calls with RuntimeShutDownError, stops embedded
    /// servers, joins the IO threads (GIL released).
    #[pyo3(signature = (timeout_ms = 5000))]
    fn shutdown(&self, py: Python<'_>, timeout_ms: u64) -> PyResult<()> {
        let rt = self.rt.clone();
        py.detach(move || rt.shutdown(Duration::from_millis(timeout_ms)))
            .map_err(|e| py_error(py, &e))
    }

    fn is_shut_down(&self) -> bool {
        self.rt.is_shut_down()
    }

    /// Raises the error that calls would raise now (shut down, forked).
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        self.rt.check().map_err(|e| py_error(py, &e))
    }
}

/// A DtKV client; every operation of `dongting_sdk::kv_ops!` comes blocking
/// (GIL released) and as `*_async(..., queue, fut, conv)`, which settles the
/// `asyncio.Future` `fut` through a [`CompletionQueue`] when the call
/// completes.
#[pyclass(frozen, module = "dongting._native")]
struct NativeClient {
    c: KvClient,
}

/// The Rust type pyo3 extracts for each argument kind of `kv_ops!`, named
/// after the kind so that the glue writes `kind::$kind<'_>` (pyo3 reads argument
/// types before macros in them would expand).
#[allow(non_camel_case_types)]
mod kind {
    pub type group<'a> = u32;
    pub type bytes<'a> = &'a [u8];
    pub type bytes_list<'a> = Vec<Vec<u8>>;
    pub type u64<'a> = core::primitive::u64;
}

/// What the SDK call takes for an extracted argument of a kind.
macro_rules! py_arg {
    (bytes_list, $v:ident) => {
        &refs(&$v)
    };
    ($kind:ident, $v:ident) => {
        $v
    };
}

/// `NativeClient`'s methods: the table's operations, then `@extra`.
macro_rules! py_glue {
    ($( $name:ident / $async_name:ident ( $($arg:ident : $kind:ident),* ); )* @extra { $($extra:tt)* }) => {
        #[pymethods]
        impl NativeClient {
            $($extra)*

            $(
                fn $name(&self, py: Python<'_>, $($arg: kind::$kind<'_>),*) -> PyResult<Py<PyAny>> {
                    let f = self.c.$async_name($(py_arg!($kind, $arg)),*);
                    let r = py.detach(|| f.wait_result());
                    to_py(py, r)
                }

                // pyo3 methods mirror the Python call, one argument each.
                #[allow(clippy::too_many_arguments)]
                fn $async_name(
                    &self,
                    py: Python<'_>,
                    $($arg: kind::$kind<'_>,)*
                    queue: &CompletionQueue,
                    fut: Py<PyAny>,
                    conv: Py<PyAny>,
                ) -> PyResult<()> {
                    deliver(py, self.c.$async_name($(py_arg!($kind, $arg)),*), queue, fut, conv)
                }
            )*
        }
    };
}

dongting_sdk::kv_ops! {
    py_glue,
    #[new]
    fn new(py: Python<'_>, runtime: &NativeRuntime, servers: &str, timeout_ms: u64) -> PyResult<Self> {
        let rt = runtime.rt.clone();
        let servers = servers.to_string();
        py.detach(move || KvClient::new(&rt, &servers, timeout_ms))
            .map(|c| NativeClient { c })
            .map_err(|e| py_error(py, &e))
    }

    fn client_id(&self) -> u64 {
        self.c.client_id()
    }

    /// Closes the client (GIL released); later calls raise ClosedError.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.c.clone();
        py.detach(move || c.close()).map_err(|e| py_error(py, &e))
    }

    /// Watches `keys` of `group` above `from_index`; blocks (GIL released)
    /// until a server accepted the watch, at most the client's timeout.
    fn watch(
        &self,
        py: Python<'_>,
        group: u32,
        keys: Vec<Vec<u8>>,
        from_index: u64,
    ) -> PyResult<NativeWatch> {
        let c = self.c.clone();
        py.detach(move || c.watch(group, &refs(&keys), from_index))
            .map(|w| NativeWatch { w })
            .map_err(|e| py_error(py, &e))
    }

    /// A handle on the lock at `key`; nothing is sent yet.
    /// Registers a watch without holding a thread: settles the
    /// `asyncio.Future` `fut` through `queue` with `conv(NativeWatch)` once a
    /// server accepted it, or with the error.
    #[allow(clippy::too_many_arguments)]
    fn watch_cb(
        &self,
        py: Python<'_>,
        group: u32,
        keys: Vec<Vec<u8>>,
        from_index: u64,
        queue: &CompletionQueue,
        fut: Py<PyAny>,
        conv: Py<PyAny>,
    ) -> PyResult<()> {
        let op = self.c.watch_async(group, &refs(&keys), from_index);
        let c = Completion {
            fut,
            conv,
            out: Outcome::Opened(op.clone()),
        };
        queue
            .queue
            .track(&op, c)
            .map(drop)
            .map_err(|e| py_error(py, &e))
    }

    fn create_lock(&self, py: Python<'_>, group: u32, key: &[u8]) -> PyResult<NativeLock> {
        self.c
            .create_lock(group, key)
            .map(|l| NativeLock { l })
            .map_err(|e| py_error(py, &e))
    }
}

/// A distributed lock; the calls that talk to the cluster block with the
/// GIL released.
#[pyclass(frozen, module = "dongting._native")]
struct NativeLock {
    l: dongting_sdk::Lock,
}

#[pymethods]
impl NativeLock {
    /// The fencing token, 0 when the wait ended without the lock.
    fn try_lock(&self, py: Python<'_>, lease_ms: u64, wait_timeout_ms: u64) -> PyResult<u64> {
        let l = self.l.clone();
        py.detach(move || l.try_lock(lease_ms, wait_timeout_ms))
            .map_err(|e| py_error(py, &e))
    }

    fn unlock(&self, py: Python<'_>) -> PyResult<()> {
        let l = self.l.clone();
        py.detach(move || l.unlock()).map_err(|e| py_error(py, &e))
    }

    fn update_lease(&self, py: Python<'_>, lease_ms: u64) -> PyResult<()> {
        let l = self.l.clone();
        py.detach(move || l.update_lease(lease_ms))
            .map_err(|e| py_error(py, &e))
    }

    fn try_lock_cb(
        &self,
        py: Python<'_>,
        lease_ms: u64,
        wait_timeout_ms: u64,
        queue: &CompletionQueue,
        fut: Py<PyAny>,
        conv: Py<PyAny>,
    ) -> PyResult<()> {
        deliver(
            py,
            self.l.try_lock_async(lease_ms, wait_timeout_ms),
            queue,
            fut,
            conv,
        )
    }

    fn unlock_cb(
        &self,
        py: Python<'_>,
        queue: &CompletionQueue,
        fut: Py<PyAny>,
        conv: Py<PyAny>,
    ) -> PyResult<()> {
        deliver(py, self.l.unlock_async(), queue, fut, conv)
    }

    fn update_lease_cb(
        &self,
        py: Python<'_>,
        lease_ms: u64,
        queue: &CompletionQueue,
        fut: Py<PyAny>,
        conv: Py<PyAny>,
    ) -> PyResult<()> {
        deliver(py, self.l.update_lease_async(lease_ms), queue, fut, conv)
    }

    fn is_held(&self) -> bool {
        self.l.is_held()
    }

    fn lease_rest_ms(&self) -> u64 {
        self.l.lease_rest_ms()
    }

    fn token(&self) -> u64 {
        self.l.token()
    }
}

/// How long one wait of a blocking watch call lasts before the caller's
/// signals are checked (Ctrl-C stops a wait within this).
const WATCH_SLICE_MS: u64 = 200;

/// `(compacted, index, key, node_kind, value, history_floor)`.
fn watch_event_tuple<'py>(py: Python<'py>, e: &WatchEvent) -> PyResult<Bound<'py, PyTuple>> {
    (
        e.kind == WatchEventKind::Compacted,
        e.index,
        PyBytes::new(py, &e.key),
        e.node_kind as u32,
        PyBytes::new(py, &e.value),
        e.history_floor,
    )
        .into_pyobject(py)
}

/// A watch stream; waits release the GIL.
#[pyclass(frozen, module = "dongting._native")]
struct NativeWatch {
    w: Watch,
}

#[pymethods]
impl NativeWatch {
    /// The next event tuple, or None when nothing came within `timeout_ms`
    /// (None: wait until one comes). Waits in slices of 200 ms with the GIL
    /// released and checks signals between them, so KeyboardInterrupt (or
    /// whatever a signal handler raises) ends the wait; nothing is lost then.
    #[pyo3(signature = (timeout_ms = None))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout_ms: Option<u64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if let Some(t) = timeout_ms
            && t > dongting_sdk::MAX_TIMEOUT_MS
        {
            return Err(py_error(
                py,
                &Error::invalid_argument(format!(
                    "timeout_ms must be between 0 and {}, got {t}",
                    dongting_sdk::MAX_TIMEOUT_MS
                )),
            ));
        }
        let deadline = timeout_ms.map(|t| std::time::Instant::now() + Duration::from_millis(t));
        loop {
            let slice = match deadline {
                None => WATCH_SLICE_MS,
                Some(d) => {
                    let rest = d.saturating_duration_since(std::time::Instant::now());
                    u64::try_from(rest.as_millis())
                        .unwrap_or(u64::MAX)
                        .min(WATCH_SLICE_MS)
                }
            };
            let w = self.w.clone();
            match py.detach(move || w.next(slice)) {
                Ok(Some(e)) => return watch_event_tuple(py, &e).map(Some),
                Ok(None) => {}
                Err(e) => return Err(py_error(py, &e)),
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Waits for the next event without holding a thread: settles the
    /// `asyncio.Future` `fut` through `queue` with `conv(event tuple)`, or
    /// `conv(None)` when nothing came within `timeout_ms`, or the error.
    /// Waits queue behind each other like blocking ones.
    fn next_cb(&self, timeout_ms: u64, queue: &CompletionQueue, fut: Py<PyAny>, conv: Py<PyAny>) {
        let q = queue.queue.clone();
        // Never fails: this queue is never closed.
        let _ = q.begin();
        self.w.next_async(
            timeout_ms,
            Box::new(move |r, _last| {
                q.push(Completion {
                    fut,
                    conv,
                    out: Outcome::Watch(r),
                });
            }),
        );
    }

    /// The highest raft index the watch is complete up to (never blocks).
    fn last_index(&self, py: Python<'_>) -> PyResult<u64> {
        self.w.last_index().map_err(|e| py_error(py, &e))
    }

    /// Unregisters the watch (GIL released); a wait in progress ends with
    /// ClosedError. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let w = self.w.clone();
        py.detach(move || w.close()).map_err(|e| py_error(py, &e))
    }

    /// Unregisters the watch without holding a thread: settles the
    /// `asyncio.Future` `fut` through `queue` with `conv(reply)`, or the
    /// error. Idempotent.
    fn close_cb(
        &self,
        py: Python<'_>,
        queue: &CompletionQueue,
        fut: Py<PyAny>,
        conv: Py<PyAny>,
    ) -> PyResult<()> {
        deliver(py, self.w.close_async(), queue, fut, conv)
    }
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

/// A node running in this process.
#[pyclass(frozen, module = "dongting._native")]
struct NativeServer {
    s: EmbeddedServer,
}

#[pymethods]
impl NativeServer {
    /// Starts a node from TOML text (GIL released while it starts).
    #[staticmethod]
    fn start(py: Python<'_>, runtime: &NativeRuntime, toml: &str) -> PyResult<Self> {
        let rt = runtime.rt.clone();
        let toml = toml.to_string();
        py.detach(move || EmbeddedServer::start(&rt, &toml))
            .map(|s| NativeServer { s })
            .map_err(|e| py_error(py, &e))
    }

    /// Starts a node from a TOML file (GIL released while it starts).
    #[staticmethod]
    fn start_file(py: Python<'_>, runtime: &NativeRuntime, path: &str) -> PyResult<Self> {
        let rt = runtime.rt.clone();
        let path = path.to_string();
        py.detach(move || EmbeddedServer::start_file(&rt, &path))
            .map(|s| NativeServer { s })
            .map_err(|e| py_error(py, &e))
    }

    fn node_id(&self) -> u32 {
        self.s.node_id()
    }

    fn service_addr(&self) -> String {
        self.s.service_addr()
    }

    fn replicate_addr(&self) -> String {
        self.s.replicate_addr()
    }

    fn is_stopped(&self) -> bool {
        self.s.is_stopped()
    }

    /// `{"node_id", "ready", "groups": [{"group_id", "role", "term",
    /// "leader_id", "commit_index", "applied_index", "ready"}]}`.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.s.status().map_err(|e| py_error(py, &e))?;
        let d = PyDict::new(py);
        d.set_item("node_id", st.node_id)?;
        d.set_item("ready", st.ready)?;
        let groups = PyList::empty(py);
        for g in &st.groups {
            let gd = PyDict::new(py);
            gd.set_item("group_id", g.group_id)?;
            gd.set_item("role", &g.role)?;
            gd.set_item("term", g.term)?;
            gd.set_item("leader_id", g.leader_id)?;
            gd.set_item("commit_index", g.commit_index)?;
            gd.set_item("applied_index", g.applied_index)?;
            gd.set_item("ready", g.ready)?;
            groups.append(gd)?;
        }
        d.set_item("groups", groups)?;
        Ok(d)
    }

    /// The node's metrics in the Prometheus text format (`GET /metrics`).
    fn metrics(&self, py: Python<'_>) -> PyResult<String> {
        self.s.metrics().map_err(|e| py_error(py, &e))
    }

    /// Stops the node gracefully (GIL released). Idempotent.
    #[pyo3(signature = (grace_ms = 1000))]
    fn stop(&self, py: Python<'_>, grace_ms: u64) -> PyResult<()> {
        let s = self.s.clone();
        py.detach(move || s.stop(Duration::from_millis(grace_ms)))
            .map_err(|e| py_error(py, &e))
    }
}

/// TOML configurations of a loopback cluster (free ports picked now).
#[pyfunction]
fn local_cluster_configs(
    py: Python<'_>,
    nodes: u32,
    groups: Vec<u32>,
    data_dir: &str,
) -> PyResult<Vec<String>> {
    dongting_sdk::local_cluster_configs(nodes, &groups, data_dir).map_err(|e| py_error(py, &e))
}

/// The symbolic name of an error code.
#[pyfunction]
fn code_name(code: i32) -> &'static str {
    Error::code_name(code)
}

/// Every error code of the SDK's table as `(name, code)`, in code order.
#[pyfunction]
fn error_codes() -> Vec<(&'static str, i32)> {
    dongting_sdk::codes()
        .iter()
        .map(|c| (c.name, c.code))
        .collect()
}

/// The names of the DtKV operations every client exposes, in
/// `dongting_sdk::kv_ops!` order.
#[pyfunction]
fn kv_op_names() -> Vec<&'static str> {
    dongting_sdk::kv_op_names().to_vec()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeRuntime>()?;
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeLock>()?;
    m.add_class::<NativeWatch>()?;
    m.add_class::<NativeServer>()?;
    m.add_class::<CompletionQueue>()?;
    m.add_function(wrap_pyfunction!(local_cluster_configs, m)?)?;
    m.add_function(wrap_pyfunction!(code_name, m)?)?;
    m.add_function(wrap_pyfunction!(error_codes, m)?)?;
    m.add_function(wrap_pyfunction!(kv_op_names, m)?)?;
    m.add("VERSION", dongting_sdk::VERSION)?;
    m.add("MAX_TIMEOUT_MS", dongting_sdk::MAX_TIMEOUT_MS)?;
    m.add("MAX_PAGE_LIMIT", dongting_sdk::MAX_PAGE_LIMIT)?;
    m.add("MAX_TTL_MS", dongting_sdk::MAX_TTL_MS)?;
    m.add("MAX_WORKER_THREADS", dongting_sdk::MAX_WORKER_THREADS)?;
    Ok(())
}
