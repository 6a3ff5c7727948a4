//! The native module of the `dongting` npm package: a thin napi-rs
//! projection of `dongting-sdk`. Semantics live in the SDK; this module
//! converts arguments and results and hands completions to the JavaScript
//! event loop. The package (`node/`) builds the public API on top.
//!
//! Completion path: every asynchronous call gets a numeric id from JavaScript
//! and registers one callback on its [`OpFuture`]. The callback (on the IO
//! thread that completes the call) pushes `(id, future)` on the SDK's
//! [`CompletionQueue`] of a [`Completions`] and, only when no drain is
//! pending, the queue calls one threadsafe function.
//! That wakes the event loop, whose handler calls [`Completions::drain`] and
//! settles every promise at once: no thread per call, one loop wake-up per
//! burst of completions.
//!
//! Watches open, read and close the same way (the SDK's asynchronous
//! forms), so no call holds a thread of its own.
//!
//! The threadsafe function holds the event loop open only while calls are in
//! flight (it is referenced on the first pending call and unreferenced when
//! the last one is drained), so an idle or closed client never keeps Node
//! alive.

#![allow(unsafe_code)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dongting_sdk::{
    CompletionQueue, EmbeddedServer, Error, KvClient, Lock, OpFuture, Reply, Runtime, Watch,
    WatchEvent, WatchEventKind,
};
use napi::bindgen_prelude::{
    BigInt, Buffer, Float64Array, FromNapiValue, Function, TypeName, ValidateNapiValue, ValueType,
};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status, sys};
use napi_derive::napi;

/// A key or value from JavaScript: a string (read as UTF-8) or any typed
/// array or Buffer, borrowed for the duration of the call (the SDK copies it
/// before the call returns), so no reference to it is created.
pub enum Bytes {
    Str(String),
    Slice(&'static [u8]),
}

fn bytes(b: &Bytes) -> &[u8] {
    match b {
        Bytes::Str(s) => s.as_bytes(),
        Bytes::Slice(a) => a,
    }
}

impl FromNapiValue for Bytes {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> napi::Result<Self> {
        let mut t = 0;
        // SAFETY: `env` and `v` are the live handles napi passed to this call.
        napi::check_status!(unsafe { sys::napi_typeof(env, v, &mut t) })?;
        if t == sys::ValueType::napi_string {
            // SAFETY: as above; `v` is a string.
            return Ok(Bytes::Str(unsafe { String::from_napi_value(env, v) }?));
        }
        // SAFETY: as above; a non-typed-array is rejected with an error. The
        // slice is only used before the native call returns, while the
        // JavaScript value is alive on the caller's stack.
        Ok(Bytes::Slice(unsafe { <&[u8]>::from_napi_value(env, v) }?))
    }
}

impl TypeName for Bytes {
    fn type_name() -> &'static str {
        "string | Uint8Array"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for Bytes {}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A synchronous failure, thrown as a JavaScript `Error` whose message is
/// `dongting:CODE:MESSAGE`; the package turns it into a `DongtingError`.
fn throw(e: &Error) -> napi::Error {
    napi::Error::new(
        Status::GenericFailure,
        format!("dongting:{}:{}", e.code(), e.message()),
    )
}

/// The runtime of this process, shared by every client and server of every
/// Node environment (main thread and workers). Started on first use.
fn runtime() -> napi::Result<Runtime> {
    static RT: OnceLock<Mutex<Option<Runtime>>> = OnceLock::new();
    let cell = RT.get_or_init(|| Mutex::new(None));
    let mut g = lock(cell);
    if let Some(rt) = g.as_ref() {
        return Ok(rt.clone());
    }
    let rt = Runtime::new(0).map_err(|e| throw(&e))?;
    *g = Some(rt.clone());
    Ok(rt)
}

/// Why an operation failed.
#[napi(object)]
pub struct ErrorInfo {
    /// The stable code (1-13 RPC status, 900-999 library, 1000 + n DtKV).
    pub code: i32,
    /// The symbolic name of the code (`NOT_FOUND`, `TIMEOUT`...).
    pub code_name: String,
    /// A human-readable description.
    pub message: String,
    /// True when the request was certainly not executed.
    pub retryable: bool,
    /// `host:port` of the leader after NOT_RAFT_LEADER, when known.
    pub leader_hint: Option<String>,
}

fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo {
        code: e.code(),
        code_name: Error::code_name(e.code()).to_string(),
        message: e.message().to_string(),
        retryable: e.retryable(),
        leader_hint: e.leader_hint().map(str::to_string),
    }
}

/// One DtKV node as read.
#[napi(object)]
pub struct NodeInfo {
    pub key: String,
    pub value: Buffer,
    /// 0 absent, 1 value, 2 directory, 3 lock.
    pub kind: u32,
    pub create_index: f64,
    pub create_time_ms: f64,
    pub update_index: f64,
    pub update_time_ms: f64,
    pub ttl_deadline_ms: f64,
    pub ttl_owner: BigInt,
}

/// One finished call: `error` is set when it failed, the reply fields when
/// it succeeded.
#[napi(object)]
pub struct Completion {
    pub id: u32,
    pub error: Option<ErrorInfo>,
    /// Which call produced it (see the SDK's `ReplyKind`).
    pub kind: u32,
    pub index: f64,
    pub created: bool,
    pub deadline_ms: f64,
    pub nodes: Option<Vec<NodeInfo>>,
    pub codes: Option<Vec<i32>>,
    /// A lock acquisition: the fencing token (0: not acquired).
    pub token: Option<BigInt>,
    /// A watch read: the item, absent when the wait ended without one.
    pub event: Option<WatchEventInfo>,
    /// A watch read: the index the watch is complete up to.
    pub last_index: f64,
    /// A list page: children follow its last node.
    pub more: bool,
}

/// One item of a watch.
#[napi(object)]
pub struct WatchEventInfo {
    /// True for a compaction notice (re-read the watched keys).
    pub compacted: bool,
    /// Changed: the raft index of the write. Compacted: the index events
    /// continue after.
    pub index: f64,
    pub key: Buffer,
    /// 0 absent, 1 value, 2 directory, 3 lock.
    pub kind: u32,
    pub value: Buffer,
    /// Compacted: the lowest index the server's history resumes after.
    pub history_floor: f64,
}

/// What a call queued for the event loop produced.
enum Done {
    /// An SDK operation.
    Op(OpFuture),
    /// A watch read: the item or none, and the watch's progress index.
    Event(Result<Option<WatchEvent>, Error>, u64),
}

fn completion(id: u32, r: Option<&Result<Reply, Error>>) -> Completion {
    let mut c = Completion {
        id,
        error: None,
        kind: 0,
        index: 0.0,
        created: false,
        deadline_ms: 0.0,
        nodes: None,
        codes: None,
        token: None,
        event: None,
        last_index: 0.0,
        more: false,
    };
    match r {
        Some(Ok(r)) => {
            c.kind = r.kind as u32;
            c.index = r.index as f64;
            c.created = r.created;
            c.deadline_ms = r.deadline_ms as f64;
            c.more = r.more;
            if !r.nodes.is_empty() || r.kind != dongting_sdk::ReplyKind::Write {
                c.nodes = Some(
                    r.nodes
                        .iter()
                        .map(|n| NodeInfo {
                            key: String::from_utf8_lossy(&n.key).into_owned(),
                            value: Buffer::from(n.value.to_vec()),
                            kind: n.kind as u32,
                            create_index: n.create_index as f64,
                            create_time_ms: n.create_time_ms as f64,
                            update_index: n.update_index as f64,
                            update_time_ms: n.update_time_ms as f64,
                            ttl_deadline_ms: n.ttl_deadline_ms as f64,
                            ttl_owner: BigInt::from(n.ttl_owner),
                        })
                        .collect(),
                );
            }
            if !r.codes.is_empty() {
                c.codes = Some(r.codes.clone());
            }
            if r.kind == dongting_sdk::ReplyKind::Lock {
                c.token = Some(BigInt::from(r.token));
            }
        }
        Some(Err(e)) => c.error = Some(error_info(e)),
        None => {
            c.error = Some(error_info(&Error::new(
                dongting_sdk::code::PENDING,
                "the operation completed without a result",
            )))
        }
    }
    c
}

fn event_completion(id: u32, r: &Result<Option<WatchEvent>, Error>, last: u64) -> Completion {
    let mut c = match r {
        Ok(_) => completion(id, Some(&Ok(Reply::default()))),
        Err(e) => completion(id, Some(&Err(e.clone()))),
    };
    c.last_index = last as f64;
    if let Ok(Some(e)) = r {
        c.event = Some(WatchEventInfo {
            compacted: e.kind == WatchEventKind::Compacted,
            index: e.index as f64,
            key: Buffer::from(e.key.to_vec()),
            kind: e.node_kind as u32,
            value: Buffer::from(e.value.to_vec()),
            history_floor: e.history_floor as f64,
        });
    }
    c
}

/// What [`Completions::drain`] returns.
#[napi(object)]
pub struct Drained {
    pub flat: Float64Array,
    pub full: Vec<Completion>,
}

type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

/// A completed call: its id and what it produced.
type Item = (u32, Done);

/// Completed calls waiting for the event loop (one per Node environment).
#[napi]
pub struct Completions {
    queue: CompletionQueue<Item>,
    /// Called (non-blocking) by the queue when completions arrive and no
    /// drain is pending; referenced while calls are in flight.
    wake: Arc<Mutex<Wake>>,
}

#[napi]
impl Completions {
    /// `wake()` runs on the event loop when completions arrive; it must call
    /// `drain()`.
    #[napi(constructor)]
    pub fn new(wake: Function<'_, (), ()>) -> napi::Result<Self> {
        let tsfn = wake
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|_ctx| Ok(()))?;
        let wake = Arc::new(Mutex::new(tsfn));
        let w = wake.clone();
        let queue = CompletionQueue::new(move || {
            // Fails only when the environment is shutting down: nobody waits then.
            let _ = lock(&w).call((), ThreadsafeFunctionCallMode::NonBlocking);
        });
        Ok(Completions { queue, wake })
    }

    /// Number of calls in flight.
    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        u32::try_from(self.queue.pending()).unwrap_or(u32::MAX)
    }

    /// Every completion since the last drain. Plain writes come as five
    /// numbers each in `flat`: `id, -1, index, created (0/1), deadlineMs`;
    /// any other completion as `id, slot` (then three zeros) with its details
    /// in `full[slot]`. Writes dominate busy clients, and numbers in one typed
    /// array cost far less to hand over than an object each.
    #[napi]
    pub fn drain(&self, env: Env) -> napi::Result<Drained> {
        let items = self.queue.drain();
        let mut flat = Vec::with_capacity(items.len() * 5);
        let mut full = Vec::new();
        for (id, d) in &items {
            let f = match d {
                Done::Op(f) => f,
                Done::Event(r, last) => {
                    flat.extend_from_slice(&[f64::from(*id), full.len() as f64, 0.0, 0.0, 0.0]);
                    full.push(event_completion(*id, r, *last));
                    continue;
                }
            };
            match f.result() {
                Some(Ok(r)) if r.kind == dongting_sdk::ReplyKind::Write && r.codes.is_empty() => {
                    flat.extend_from_slice(&[
                        f64::from(*id),
                        -1.0,
                        r.index as f64,
                        if r.created { 1.0 } else { 0.0 },
                        r.deadline_ms as f64,
                    ]);
                }
                r => {
                    flat.extend_from_slice(&[f64::from(*id), full.len() as f64, 0.0, 0.0, 0.0]);
                    full.push(completion(*id, r));
                }
            }
        }
        // Only this thread begins calls: none is in flight when this is 0.
        if self.queue.pending() == 0 {
            #[allow(deprecated)]
            lock(&self.wake).unref(&env)?;
        }
        self.queue.recycle(items);
        Ok(Drained {
            flat: Float64Array::new(flat),
            full,
        })
    }

    /// Registers `f` under `id`: its completion is queued for `drain()`, and
    /// the event loop stays open until then.
    fn track(&self, env: &Env, id: u32, f: OpFuture) -> napi::Result<()> {
        let before = self
            .queue
            .track(&f, (id, Done::Op(f.clone())))
            .map_err(|e| throw(&e))?;
        self.hold(env, before)
    }

    /// References the wake-up function (holding the event loop open) when
    /// `before`, the calls in flight before the one just begun, is 0.
    fn hold(&self, env: &Env, before: usize) -> napi::Result<()> {
        if before == 0 {
            #[allow(deprecated)]
            lock(&self.wake).refer(env)?;
        }
        Ok(())
    }

    /// Counts one more call in flight (holding the event loop open from the
    /// first) and returns the queue its result must be pushed on, exactly once.
    fn begin(&self, env: &Env) -> napi::Result<CompletionQueue<Item>> {
        let before = self.queue.begin().map_err(|e| throw(&e))?;
        self.hold(env, before)?;
        Ok(self.queue.clone())
    }
}

/// A DtKV client. Every operation takes the completion queue and an id, and
/// queues its result there.
#[napi]
pub struct NativeClient {
    c: KvClient,
}

#[napi]
impl NativeClient {
    /// A client for `servers` (`host:port,...`) with a per-call timeout
    /// (1 to `MAX_TIMEOUT_MS`). Connects lazily.
    #[napi(constructor)]
    pub fn new(servers: String, timeout_ms: u32) -> napi::Result<Self> {
        let rt = runtime()?;
        KvClient::new(&rt, &servers, u64::from(timeout_ms))
            .map(|c| NativeClient { c })
            .map_err(|e| throw(&e))
    }

    /// The write session id (owner of this client's temporary nodes).
    #[napi(getter)]
    pub fn client_id(&self) -> BigInt {
        BigInt::from(self.c.client_id())
    }

    /// Fails new calls with CLOSED; connections close once calls in flight
    /// finish (up to one second).
    #[napi]
    pub fn close(&self, env: Env, q: &Completions, id: u32) -> napi::Result<()> {
        q.track(&env, id, self.c.close_async())
    }

    /// Registers a watch on `keys` of `group` for writes above `from_index`
    /// into `w` (a fresh handle); completes on `q` under `id` once a server
    /// accepted it.
    // Mirrors the JavaScript call, one argument each.
    #[allow(clippy::too_many_arguments)]
    #[napi]
    pub fn watch(
        &self,
        env: Env,
        q: &Completions,
        id: u32,
        w: &NativeWatch,
        group: u32,
        keys: Vec<Bytes>,
        from_index: f64,
    ) -> napi::Result<()> {
        if !(0.0..=9_007_199_254_740_991.0).contains(&from_index) || from_index.fract() != 0.0 {
            return Err(throw(&Error::invalid_argument(format!(
                "fromIndex must be an integer between 0 and 9007199254740991, got {from_index}"
            ))));
        }
        let k: Vec<&[u8]> = keys.iter().map(bytes).collect();
        let f = self.c.watch_async(group, &k, from_index as u64);
        let slot = w.w.clone();
        let q = q.begin(&env)?;
        let f2 = f.clone();
        f.on_complete(Box::new(move || {
            if let Some(Ok(r)) = f2.result() {
                *lock(&slot) = r.watch.clone();
            }
            q.push((id, Done::Op(f2)));
        }))
        .map_err(|e| throw(&e))
    }

    /// A handle on the lock at `key` of `group` (nothing is sent yet).
    #[napi]
    pub fn create_lock(&self, group: u32, key: Bytes) -> napi::Result<NativeLock> {
        self.c
            .create_lock(group, bytes(&key))
            .map(|l| NativeLock { l })
            .map_err(|e| throw(&e))
    }
}

/// `NativeClient`'s methods for the operations of `dongting_sdk::kv_ops!`,
/// one `#[napi] impl` block each: `name(q, id, group, ...)` queues the
/// result on `q` under `id`.
macro_rules! node_glue {
    ($($name:ident / $async_name:ident ($($arg:ident : $kind:ident),*);)*) => {
        $(node_op! { $name $async_name [] [] $($arg : $kind,)* })*
    };
}

/// One table operation: maps each argument kind to its JavaScript type
/// (first bracket) and to what the SDK call takes (second bracket), then
/// writes the method. napi reads the argument types before macros in them
/// would expand, so the types are written out here.
macro_rules! node_op {
    ($name:ident $async_name:ident [$($p:tt)*] [$($a:tt)*]) => {
        #[napi]
        impl NativeClient {
            // Mirrors the JavaScript call, one argument each.
            #[allow(clippy::too_many_arguments)]
            #[napi]
            pub fn $name(&self, env: Env, q: &Completions, id: u32, $($p)*) -> napi::Result<()> {
                let f = self.c.$async_name($($a)*);
                q.track(&env, id, f)
            }
        }
    };
    ($n:ident $an:ident [$($p:tt)*] [$($a:tt)*] $arg:ident : group, $($rest:tt)*) => {
        node_op! { $n $an [$($p)* $arg: u32,] [$($a)* $arg,] $($rest)* }
    };
    ($n:ident $an:ident [$($p:tt)*] [$($a:tt)*] $arg:ident : bytes, $($rest:tt)*) => {
        node_op! { $n $an [$($p)* $arg: Bytes,] [$($a)* bytes(&$arg),] $($rest)* }
    };
    ($n:ident $an:ident [$($p:tt)*] [$($a:tt)*] $arg:ident : bytes_list, $($rest:tt)*) => {
        node_op! { $n $an [$($p)* $arg: Vec<Bytes>,] [$($a)* &$arg.iter().map(bytes).collect::<Vec<&[u8]>>(),] $($rest)* }
    };
    ($n:ident $an:ident [$($p:tt)*] [$($a:tt)*] limit : u64, $($rest:tt)*) => {
        node_op! { $n $an [$($p)* limit: f64,] [$($a)* page_limit(limit)?,] $($rest)* }
    };
    ($n:ident $an:ident [$($p:tt)*] [$($a:tt)*] $arg:ident : u64, $($rest:tt)*) => {
        node_op! { $n $an [$($p)* $arg: f64,] [$($a)* ms($arg),] $($rest)* }
    };
}

dongting_sdk::kv_ops!(node_glue);

/// A list page's limit from JavaScript: an integer from 0 (the server's
/// default) to `MAX_PAGE_LIMIT`.
fn page_limit(limit: f64) -> napi::Result<u64> {
    if !(0.0..=f64::from(MAX_PAGE_LIMIT)).contains(&limit) || limit.fract() != 0.0 {
        return Err(throw(&Error::invalid_argument(format!(
            "limit must be an integer between 0 and {MAX_PAGE_LIMIT}, got {limit}"
        ))));
    }
    Ok(limit as u64)
}

/// The names of the DtKV operations every client exposes (snake_case, in
/// `dongting_sdk::kv_ops!` order).
#[napi]
pub fn kv_op_names() -> Vec<&'static str> {
    dongting_sdk::kv_op_names().to_vec()
}

/// A watch: empty until [`NativeClient::watch`] completes.
#[napi]
pub struct NativeWatch {
    w: Arc<Mutex<Option<Watch>>>,
}

impl NativeWatch {
    fn get(&self) -> Result<Watch, Error> {
        lock(&self.w).clone().ok_or_else(|| {
            Error::new(
                dongting_sdk::code::CLOSED,
                "the watch is not registered or was closed",
            )
        })
    }
}

#[napi]
impl NativeWatch {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        NativeWatch {
            w: Arc::new(Mutex::new(None)),
        }
    }

    /// The next item, waiting at most `timeout_ms`; completes on `q` under
    /// `id` with `event` unset when none came in time. Holds no thread while
    /// it waits.
    #[napi]
    pub fn next(&self, env: Env, q: &Completions, id: u32, timeout_ms: u32) -> napi::Result<()> {
        let w = self.get().map_err(|e| throw(&e))?;
        let q = q.begin(&env)?;
        w.next_async(
            u64::from(timeout_ms),
            Box::new(move |r, last| q.push((id, Done::Event(r, last)))),
        );
        Ok(())
    }

    /// Unregisters the watch (idempotent); completes on `q` under `id`.
    #[napi]
    pub fn close(&self, env: Env, q: &Completions, id: u32) -> napi::Result<()> {
        let f = match lock(&self.w).take() {
            Some(w) => w.close_async(),
            None => OpFuture::ready(Ok(Reply::default())),
        };
        q.track(&env, id, f)
    }
}

/// A distributed lock used through the session of the client that made it.
#[napi]
pub struct NativeLock {
    l: Lock,
}

#[napi]
impl NativeLock {
    /// Acquires with a lease of `lease_ms`, waiting up to `wait_ms`; the
    /// completion's token is the fencing token, 0 when not acquired.
    #[napi]
    pub fn try_lock(
        &self,
        env: Env,
        q: &Completions,
        id: u32,
        lease_ms: f64,
        wait_ms: f64,
    ) -> napi::Result<()> {
        q.track(&env, id, self.l.try_lock_async(ms(lease_ms), ms(wait_ms)))
    }

    /// Releases the lock or leaves its queue.
    #[napi]
    pub fn unlock(&self, env: Env, q: &Completions, id: u32) -> napi::Result<()> {
        q.track(&env, id, self.l.unlock_async())
    }

    /// Extends the lease to `lease_ms` from now.
    #[napi]
    pub fn update_lease(
        &self,
        env: Env,
        q: &Completions,
        id: u32,
        lease_ms: f64,
    ) -> napi::Result<()> {
        q.track(&env, id, self.l.update_lease_async(ms(lease_ms)))
    }

    /// True while this client holds the lock by its own count.
    #[napi]
    pub fn is_held(&self) -> bool {
        self.l.is_held()
    }

    /// Milliseconds left of the lease by this client's count (0: not held).
    #[napi]
    pub fn lease_rest_ms(&self) -> f64 {
        self.l.lease_rest_ms() as f64
    }

    /// The fencing token of the current hold, 0 when not held.
    #[napi]
    pub fn token(&self) -> BigInt {
        BigInt::from(self.l.token())
    }
}

/// The longest per-call timeout, in milliseconds (one day).
#[napi]
pub const MAX_TIMEOUT_MS: u32 = 86_400_000;
/// The longest TTL, lock lease and lock wait, in milliseconds (30 days).
#[napi]
pub const MAX_TTL_MS: u32 = 2_592_000_000;
/// The most children one list page holds (a limit of 0 asks for the default).
#[napi]
pub const MAX_PAGE_LIMIT: u32 = 10_000;

const _: () = assert!(MAX_TIMEOUT_MS as u64 == dongting_sdk::MAX_TIMEOUT_MS);
const _: () = assert!(MAX_TTL_MS as u64 == dongting_sdk::MAX_TTL_MS);
const _: () = assert!(MAX_PAGE_LIMIT as u64 == dongting_sdk::MAX_PAGE_LIMIT);

/// A duration in milliseconds from JavaScript (checked there), rounded up;
/// negative or NaN maps to 0, which the SDK refuses for a TTL or a lease.
fn ms(v: f64) -> u64 {
    if v > 0.0 {
        // `as` saturates: huge values become u64::MAX, also rejected.
        v.ceil() as u64
    } else {
        0
    }
}

/// The status of one raft group on an embedded server.
#[napi(object)]
pub struct GroupStatus {
    pub group_id: u32,
    pub role: String,
    pub term: f64,
    pub leader_id: u32,
    pub commit_index: f64,
    pub applied_index: f64,
    pub ready: bool,
}

/// An embedded server's status.
#[napi(object)]
pub struct ServerStatus {
    pub node_id: u32,
    pub ready: bool,
    pub groups: Vec<GroupStatus>,
}

/// A server start in progress: its future, kept until the package takes the
/// server with [`NativeServer::take`].
#[napi]
pub struct PendingServer {
    f: OpFuture,
}

#[napi]
impl PendingServer {
    /// Starts a node from TOML text; the start completes on `q` under `id`.
    #[napi(factory)]
    pub fn start(env: Env, q: &Completions, id: u32, toml: String) -> napi::Result<Self> {
        let rt = runtime()?;
        let f = EmbeddedServer::start_async(&rt, &toml);
        q.track(&env, id, f.clone())?;
        Ok(PendingServer { f })
    }

    /// Starts a node from a TOML file; the start completes on `q` under `id`.
    #[napi(factory)]
    pub fn start_file(env: Env, q: &Completions, id: u32, path: String) -> napi::Result<Self> {
        let rt = runtime()?;
        let f = EmbeddedServer::start_file_async(&rt, &path);
        q.track(&env, id, f.clone())?;
        Ok(PendingServer { f })
    }

    /// The started server, once the start completed successfully.
    #[napi]
    pub fn take(&self) -> napi::Result<NativeServer> {
        match self.f.result() {
            Some(Ok(r)) => match &r.server {
                Some(s) => Ok(NativeServer { s: s.clone() }),
                None => Err(throw(&Error::new(
                    dongting_sdk::code::WRONG_RESULT_KIND,
                    "the reply does not hold a server",
                ))),
            },
            Some(Err(e)) => Err(throw(e)),
            None => Err(throw(&Error::new(
                dongting_sdk::code::PENDING,
                "the server has not started yet",
            ))),
        }
    }
}

/// A node running in this process.
#[napi]
pub struct NativeServer {
    s: EmbeddedServer,
}

#[napi]
impl NativeServer {
    #[napi(getter)]
    pub fn node_id(&self) -> u32 {
        self.s.node_id()
    }

    #[napi(getter)]
    pub fn service_addr(&self) -> String {
        self.s.service_addr()
    }

    #[napi(getter)]
    pub fn replicate_addr(&self) -> String {
        self.s.replicate_addr()
    }

    #[napi(getter)]
    pub fn stopped(&self) -> bool {
        self.s.is_stopped()
    }

    #[napi]
    pub fn status(&self) -> napi::Result<ServerStatus> {
        let st = self.s.status().map_err(|e| throw(&e))?;
        Ok(ServerStatus {
            node_id: st.node_id,
            ready: st.ready,
            groups: st
                .groups
                .into_iter()
                .map(|g| GroupStatus {
                    group_id: g.group_id,
                    role: g.role,
                    term: g.term as f64,
                    leader_id: g.leader_id,
                    commit_index: g.commit_index as f64,
                    applied_index: g.applied_index as f64,
                    ready: g.ready,
                })
                .collect(),
        })
    }

    /// The node's metrics in the Prometheus text format (`GET /metrics`).
    #[napi]
    pub fn metrics(&self) -> napi::Result<String> {
        self.s.metrics().map_err(|e| throw(&e))
    }

    /// Stops the node gracefully (accepted writes finish within `grace_ms`).
    /// Idempotent; completes on `q` under `id`.
    #[napi]
    pub fn stop(&self, env: Env, q: &Completions, id: u32, grace_ms: u32) -> napi::Result<()> {
        let f = self
            .s
            .stop_async(Duration::from_millis(u64::from(grace_ms)));
        q.track(&env, id, f)
    }
}

/// TOML configurations of a loopback cluster of `nodes` nodes hosting every
/// group of `groups`, data under `dataDir/node<id>` (free ports picked now).
#[napi]
pub fn local_cluster_configs(
    nodes: u32,
    groups: Vec<u32>,
    data_dir: String,
) -> napi::Result<Vec<String>> {
    dongting_sdk::local_cluster_configs(nodes, &groups, &data_dir).map_err(|e| throw(&e))
}

/// The symbolic name of an error code (`"UNKNOWN"` for an unknown one).
#[napi]
pub fn code_name(code: i32) -> String {
    Error::code_name(code).to_string()
}

/// One row of the SDK's error-code table.
#[napi(object)]
pub struct ErrorCodeEntry {
    /// The symbolic name (`NOT_FOUND`, `TIMEOUT`...).
    pub name: String,
    /// The stable code.
    pub code: i32,
}

/// Every error code of the SDK's table, in code order.
#[napi]
pub fn error_codes() -> Vec<ErrorCodeEntry> {
    dongting_sdk::codes()
        .iter()
        .map(|c| ErrorCodeEntry {
            name: c.name.to_string(),
            code: c.code,
        })
        .collect()
}

/// The version of the native library.
#[napi]
pub fn version() -> String {
    dongting_sdk::VERSION.to_string()
}
