//! `libdongting_jvm`: the thin JNI projection of `dongting-sdk` under the
//! `io.dongting` Java package (class `io.dongting.Native`).
//!
//! Semantics live in the SDK; this library converts arguments and results
//! and nothing else:
//!
//! - Handles are numbers into registries of live runtimes, clients and
//!   servers (never raw pointers), so a stale or freed handle is an error,
//!   not a crash.
//! - Every call that can fail returns one `byte[]`: the SDK result (or error)
//!   in the compact little-endian encoding `io.dongting.Codec` reads. No Java
//!   object is built here beyond that array, and no exception is thrown
//!   except for JNI failures themselves.
//! - Asynchronous calls take a `long` token. When the operation completes,
//!   the IO thread only pushes `(token, future)` on its runtime's completion
//!   queue; it never touches the JVM, so IO threads are never attached and
//!   hold no JNI reference. A Java daemon thread takes completions in
//!   batches through [`await_completions`] and completes the
//!   `CompletableFuture`s on a Java executor.
//! - Strings cross as UTF-8 `byte[]` (never modified UTF-8).
//! - Watches and locks are handles too. A watch read is token-based like an
//!   asynchronous call: its event arrives through the same completion queue
//!   (no thread waits for it natively), and a close ends it at once. Lock
//!   calls have the same blocking and token-based asynchronous forms as
//!   client calls.
//!
//! The only local references created are those of the arrays read and the
//! one array returned; batch arguments delete each element's reference as
//! soon as it is read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use dongting_sdk::{
    CompletionQueue, EmbeddedServer, Error, KvClient, Lock, OpFuture, Reply, Runtime, ServerStatus,
    Watch, WatchEvent, code,
};
use jni::objects::{JByteArray, JClass, JObjectArray};
use jni::sys::{jint, jlong};
use jni::{Env, NativeMethod, native_method};

type JResult<T> = Result<T, jni::errors::Error>;

// ---------------------------------------------------------------------------
// Registries of live objects.

/// Live objects of one kind by handle. Handles count up from 1 and are never
/// reused, so a freed handle stays invalid.
struct Registry<T> {
    next: AtomicI64,
    map: RwLock<HashMap<i64, Arc<T>>>,
    what: &'static str,
}

impl<T> Registry<T> {
    fn new(what: &'static str) -> Self {
        Registry {
            next: AtomicI64::new(1),
            map: RwLock::new(HashMap::new()),
            what,
        }
    }

    fn insert(&self, v: T) -> i64 {
        let h = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(h, Arc::new(v));
        h
    }

    fn get(&self, h: i64) -> Result<Arc<T>, Error> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&h)
            .cloned()
            .ok_or_else(|| Error::new(code::CLOSED, format!("the {} is closed", self.what)))
    }

    fn remove(&self, h: i64) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&h)
    }

    fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

struct RtEntry {
    rt: Runtime,
    queue: Queue,
}

struct ClientEntry {
    client: KvClient,
    queue: Queue,
}

static RUNTIMES: LazyLock<Registry<RtEntry>> = LazyLock::new(|| Registry::new("runtime"));
static CLIENTS: LazyLock<Registry<ClientEntry>> = LazyLock::new(|| Registry::new("client"));
static SERVERS: LazyLock<Registry<EmbeddedServer>> = LazyLock::new(|| Registry::new("server"));
static WATCHES: LazyLock<Registry<WatchEntry>> = LazyLock::new(|| Registry::new("watch"));
static LOCKS: LazyLock<Registry<LockEntry>> = LazyLock::new(|| Registry::new("lock"));

struct WatchEntry {
    watch: Watch,
    queue: Queue,
}

struct LockEntry {
    lock: Lock,
    queue: Queue,
}

// ---------------------------------------------------------------------------
// Completion queue (the SDK's): IO threads push, one Java thread drains.

/// Most completions handed to Java in one batch.
const MAX_BATCH_COMPLETIONS: usize = 4096;

/// What a queued completion carries.
enum Done {
    /// An SDK operation.
    Op(OpFuture),
    /// A watch read: the item or none, and the watch's progress index.
    Event(Result<Option<WatchEvent>, Error>, u64),
}

/// The completion queue of one runtime: IO threads push `(token, outcome)`
/// without touching the JVM; the drain thread waits in [`await_completions`].
type Queue = CompletionQueue<(i64, Done)>;

/// A queue for a runtime: its consumer blocks in `wait`, so it needs no wake
/// function.
fn new_queue() -> Queue {
    CompletionQueue::new(|| {})
}

/// Queues `(token, f)` once `f` completes (the callback runs on the IO
/// thread completing it, takes one lock and never calls into the JVM).
fn deliver(queue: &Queue, token: i64, f: OpFuture) -> Result<(), Error> {
    queue.track(&f, (token, Done::Op(f.clone()))).map(drop)
}

// ---------------------------------------------------------------------------
// Encoding (little-endian), read by io.dongting.Codec.

const TAG_OK: u8 = 0;
const TAG_ERR: u8 = 1;
/// The kind byte of a watch read's completion (after the SDK's reply kinds).
const KIND_WATCH_EVENT: u8 = 0x80;

struct Out(Vec<u8>);

impl Out {
    fn ok() -> Out {
        Out(vec![TAG_OK])
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    /// `TAG_ERR, code, retryable, message, has_leader, [leader]`.
    fn error(&mut self, e: &Error) {
        self.u8(TAG_ERR);
        self.i32(e.code());
        self.bool(e.retryable());
        self.bytes(e.message().as_bytes());
        match e.leader_hint() {
            Some(h) => {
                self.bool(true);
                self.bytes(h.as_bytes());
            }
            None => self.bool(false),
        }
    }

    /// `TAG_OK, kind, index, created, deadline_ms, nodes, codes, token, more`.
    fn reply(&mut self, r: &Reply) {
        self.u8(TAG_OK);
        self.u8(r.kind as u8);
        self.u64(r.index);
        self.bool(r.created);
        self.u64(r.deadline_ms);
        self.len(r.nodes.len());
        for n in &r.nodes {
            self.u8(n.kind as u8);
            self.u64(n.create_index);
            self.u64(n.create_time_ms);
            self.u64(n.update_index);
            self.u64(n.update_time_ms);
            self.u64(n.ttl_deadline_ms);
            self.u64(n.ttl_owner);
            self.bytes(&n.key);
            self.bytes(&n.value);
        }
        self.len(r.codes.len());
        for c in &r.codes {
            self.i32(*c);
        }
        self.u64(r.token);
        self.bool(r.more);
    }

    /// A watch read: `TAG_OK, KIND_WATCH_EVENT, last_index, present,
    /// [kind, index, key, node_kind, value, history_floor]`.
    fn event(&mut self, ev: Option<&WatchEvent>, last_index: u64) {
        self.u8(TAG_OK);
        self.u8(KIND_WATCH_EVENT);
        self.u64(last_index);
        match ev {
            Some(ev) => {
                self.bool(true);
                self.u8(ev.kind as u8);
                self.u64(ev.index);
                self.bytes(&ev.key);
                self.u8(ev.node_kind as u8);
                self.bytes(&ev.value);
                self.u64(ev.history_floor);
            }
            None => self.bool(false),
        }
    }

    fn result(&mut self, r: &Result<Reply, Error>) {
        match r {
            Ok(r) => self.reply(r),
            Err(e) => self.error(e),
        }
    }

    fn status(&mut self, st: &ServerStatus) {
        self.u8(TAG_OK);
        self.u32(st.node_id);
        self.bool(st.ready);
        self.len(st.groups.len());
        for g in &st.groups {
            self.u32(g.group_id);
            self.bytes(g.role.as_bytes());
            self.u64(g.term);
            self.u32(g.leader_id);
            self.u64(g.commit_index);
            self.u64(g.applied_index);
            self.bool(g.ready);
        }
    }

    fn into_java<'local>(self, env: &mut Env<'local>) -> JResult<JByteArray<'local>> {
        env.byte_array_from_slice(&self.0)
    }
}

fn encode_error<'local>(env: &mut Env<'local>, e: &Error) -> JResult<JByteArray<'local>> {
    let mut o = Out(Vec::with_capacity(64));
    o.error(e);
    o.into_java(env)
}

fn encode_result<'local>(
    env: &mut Env<'local>,
    r: &Result<Reply, Error>,
) -> JResult<JByteArray<'local>> {
    let mut o = Out(Vec::with_capacity(64));
    o.result(r);
    o.into_java(env)
}

/// `TAG_OK, handle` or the error.
fn encode_handle<'local>(
    env: &mut Env<'local>,
    r: Result<i64, Error>,
) -> JResult<JByteArray<'local>> {
    match r {
        Ok(h) => {
            let mut o = Out::ok();
            o.i64(h);
            o.into_java(env)
        }
        Err(e) => encode_error(env, &e),
    }
}

/// `TAG_OK` or the error.
fn encode_unit<'local>(env: &mut Env<'local>, r: Result<(), Error>) -> JResult<JByteArray<'local>> {
    match r {
        Ok(()) => Out::ok().into_java(env),
        Err(e) => encode_error(env, &e),
    }
}

// ---------------------------------------------------------------------------
// Arguments.

/// An SDK error for a bad argument, or a JNI failure (an exception is
/// pending then).
enum ArgError {
    Arg(Error),
    Jni(jni::errors::Error),
}

impl From<jni::errors::Error> for ArgError {
    fn from(e: jni::errors::Error) -> Self {
        ArgError::Jni(e)
    }
}

fn bytes(env: &Env<'_>, a: &JByteArray<'_>, what: &str) -> Result<Vec<u8>, ArgError> {
    if a.is_null() {
        return Err(ArgError::Arg(Error::invalid_argument(format!(
            "{what} is null"
        ))));
    }
    Ok(env.convert_byte_array(a)?)
}

fn text(env: &Env<'_>, a: &JByteArray<'_>, what: &str) -> Result<String, ArgError> {
    String::from_utf8(bytes(env, a, what)?).map_err(|_| {
        ArgError::Arg(Error::invalid_argument(format!(
            "{what} is not valid UTF-8"
        )))
    })
}

fn byte_arrays(
    env: &mut Env<'_>,
    a: &JObjectArray<'_, JByteArray<'_>>,
    what: &str,
) -> Result<Vec<Vec<u8>>, ArgError> {
    if a.is_null() {
        return Err(ArgError::Arg(Error::invalid_argument(format!(
            "{what} is null"
        ))));
    }
    let n = a.len(env)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let e = a.get_element(env, i)?;
        let v = bytes(env, &e, what);
        env.delete_local_ref(e);
        out.push(v?);
    }
    Ok(out)
}

/// `v` when it is `min` to `max`, else INVALID_ARGUMENT naming `what`, the
/// range and the value given.
fn ranged(v: i64, what: &str, min: u64, max: u64) -> Result<u64, ArgError> {
    match u64::try_from(v) {
        Ok(u) if (min..=max).contains(&u) => Ok(u),
        _ => Err(ArgError::Arg(Error::invalid_argument(format!(
            "{what} must be between {min} and {max}, got {v}"
        )))),
    }
}

/// A non-negative `long`.
fn u64_arg(v: jlong, what: &str) -> Result<u64, ArgError> {
    ranged(v, what, 0, i64::MAX as u64)
}

/// A non-negative `int` (a group id, a count).
fn u32_arg(v: jint, what: &str) -> Result<u32, ArgError> {
    ranged(i64::from(v), what, 0, i32::MAX as u64).map(|u| u as u32)
}

/// A timeout or wait in milliseconds, `min` to one day.
fn ms_arg(v: jlong, what: &str, min: u64) -> Result<u64, ArgError> {
    ranged(v, what, min, dongting_sdk::MAX_TIMEOUT_MS)
}

/// Runs `f`, encoding an argument error as the result.
fn with_args<'local>(
    env: &mut Env<'local>,
    f: impl FnOnce(&mut Env<'local>) -> Result<JByteArray<'local>, ArgError>,
) -> JResult<JByteArray<'local>> {
    match f(env) {
        Ok(a) => Ok(a),
        Err(ArgError::Arg(e)) => encode_error(env, &e),
        Err(ArgError::Jni(e)) => Err(e),
    }
}

fn sdk<T>(r: Result<T, Error>) -> Result<T, ArgError> {
    r.map_err(ArgError::Arg)
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

// ---------------------------------------------------------------------------
// Runtime.

fn runtime_new<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    worker_threads: jint,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let n = u32_arg(worker_threads, "workerThreads")?;
        let h = Runtime::new(n).map(|rt| {
            RUNTIMES.insert(RtEntry {
                rt,
                queue: new_queue(),
            })
        });
        Ok(encode_handle(env, h)?)
    })
}

fn runtime_shutdown<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    rt: jlong,
    timeout_ms: jlong,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let timeout = ms_arg(timeout_ms, "timeoutMillis", 0)?;
        let e = sdk(RUNTIMES.get(rt))?;
        let r = e.rt.shutdown(Duration::from_millis(timeout));
        Ok(encode_unit(env, r)?)
    })
}

/// Closes the runtime's completion queue (its drain thread ends once it is
/// empty) and forgets the handle. The runtime itself stops when its last
/// client and server are gone, or at [`runtime_shutdown`].
fn runtime_free<'local>(_env: &mut Env<'local>, _class: JClass<'local>, rt: jlong) -> JResult<()> {
    if let Some(e) = RUNTIMES.remove(rt) {
        e.queue.close();
    }
    Ok(())
}

/// Blocks until completions of the runtime's asynchronous calls are queued,
/// then returns them: `count, (token, result)*`. Returns null once the
/// runtime was freed and every completion was handed over.
fn await_completions<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    rt: jlong,
) -> JResult<JByteArray<'local>> {
    let queue = match RUNTIMES.get(rt) {
        Ok(e) => e.queue.clone(),
        Err(_) => return Ok(JByteArray::default()),
    };
    let Some(items) = queue.wait(MAX_BATCH_COMPLETIONS) else {
        return Ok(JByteArray::default());
    };
    let mut o = Out(Vec::with_capacity(16 + items.len() * 48));
    o.len(items.len());
    for (token, d) in &items {
        o.i64(*token);
        match d {
            Done::Op(f) => match f.result() {
                Some(r) => o.result(r),
                None => o.error(&Error::new(code::PENDING, "not completed")),
            },
            Done::Event(Ok(ev), last) => o.event(ev.as_ref(), *last),
            Done::Event(Err(e), _) => o.error(e),
        }
    }
    drop(items);
    o.into_java(env)
}

/// Asynchronous operations started on the runtime and not yet handed to
/// Java (a leak check for tests).
fn runtime_pending<'local>(
    _env: &mut Env<'local>,
    _class: JClass<'local>,
    rt: jlong,
) -> JResult<jlong> {
    Ok(RUNTIMES
        .get(rt)
        .map(|e| i64::try_from(e.queue.pending()).unwrap_or(i64::MAX))
        .unwrap_or(0))
}

/// Live handles of each kind, packed: runtimes, clients, servers (21 bits
/// each; a leak check for tests).
fn live_handles<'local>(_env: &mut Env<'local>, _class: JClass<'local>) -> JResult<jlong> {
    let pack = |n: usize| i64::try_from(n.min(0x1f_ffff)).unwrap_or(0);
    Ok(pack(RUNTIMES.len()) << 42 | pack(CLIENTS.len()) << 21 | pack(SERVERS.len()))
}

// ---------------------------------------------------------------------------
// Client.

fn client_new<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    rt: jlong,
    servers: JByteArray<'local>,
    timeout_ms: jlong,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let servers = text(env, &servers, "servers")?;
        let timeout = ms_arg(timeout_ms, "timeoutMillis", 1)?;
        let e = sdk(RUNTIMES.get(rt))?;
        let h = KvClient::new(&e.rt, &servers, timeout).map(|client| {
            CLIENTS.insert(ClientEntry {
                client,
                queue: e.queue.clone(),
            })
        });
        Ok(encode_handle(env, h)?)
    })
}

fn client_id<'local>(_env: &mut Env<'local>, _class: JClass<'local>, c: jlong) -> JResult<jlong> {
    Ok(CLIENTS
        .get(c)
        .map(|e| e.client.client_id() as i64)
        .unwrap_or(0))
}

/// Closes the client (blocks up to about one second while calls in flight
/// finish) and forgets the handle: later calls fail with CLOSED.
fn client_close<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    c: jlong,
) -> JResult<JByteArray<'local>> {
    let r = match CLIENTS.remove(c) {
        Some(e) => e.client.close(),
        None => Ok(()),
    };
    encode_unit(env, r)
}

/// Blocking call: the encoded result. Asynchronous call: null once started
/// (its result arrives through [`await_completions`] with `token`), or the
/// encoded error when it could not be started.
macro_rules! ops {
    ($(
        $blocking:ident / $async_fn:ident ( group: group $(, $arg:ident : $kind:ident)* );
    )*) => {
        $(
            #[allow(clippy::too_many_arguments)]
            fn $blocking<'local>(
                env: &mut Env<'local>,
                _class: JClass<'local>,
                c: jlong,
                group: jint,
                $($arg: jvm_type!('local $arg $kind)),*
            ) -> JResult<JByteArray<'local>> {
                with_args(env, |env| {
                    $(let $arg = (jvm_conv!($arg $kind))(env, &$arg)?;)*
                    let g = u32_arg(group, "groupId")?;
                    let entry = sdk(CLIENTS.get(c))?;
                    let f: OpFuture = entry.client.$async_fn(g $(, jvm_pass!($kind, $arg))*);
                    Ok(encode_result(env, &f.wait_result())?)
                })
            }

            #[allow(clippy::too_many_arguments)]
            fn $async_fn<'local>(
                env: &mut Env<'local>,
                _class: JClass<'local>,
                c: jlong,
                token: jlong,
                group: jint,
                $($arg: jvm_type!('local $arg $kind)),*
            ) -> JResult<JByteArray<'local>> {
                with_args(env, |env| {
                    $(let $arg = (jvm_conv!($arg $kind))(env, &$arg)?;)*
                    let g = u32_arg(group, "groupId")?;
                    let entry = sdk(CLIENTS.get(c))?;
                    let f: OpFuture = entry.client.$async_fn(g $(, jvm_pass!($kind, $arg))*);
                    sdk(deliver(&entry.queue, token, f))?;
                    let _ = env;
                    Ok(JByteArray::default())
                })
            }
        )*
    };
}

/// The JNI type of an argument of `kv_ops!` (by name, then kind).
macro_rules! jvm_type {
    ($l:lifetime limit u64) => { jint };
    ($l:lifetime $arg:ident u64) => { jlong };
    ($l:lifetime $arg:ident bytes) => { JByteArray<$l> };
    ($l:lifetime $arg:ident bytes_list) => { JObjectArray<$l, JByteArray<$l>> };
}

/// The conversion of an argument of `kv_ops!` from its JNI type; the name
/// picks the one whose errors name the Java parameter.
macro_rules! jvm_conv {
    (limit u64) => {
        limit_arg
    };
    ($arg:ident u64) => {
        ttl_arg
    };
    (start_after bytes) => {
        start_after_arg
    };
    (key bytes) => {
        key_arg
    };
    (dir bytes) => {
        key_arg
    };
    ($arg:ident bytes) => {
        value_arg
    };
    (keys bytes_list) => {
        keys_arg
    };
    ($arg:ident bytes_list) => {
        values_arg
    };
}

/// What the SDK call takes for a converted argument of a kind.
macro_rules! jvm_pass {
    (u64, $v:ident) => {
        $v
    };
    (bytes, $v:ident) => {
        &$v
    };
    (bytes_list, $v:ident) => {
        &refs(&$v)
    };
}

fn key_arg(env: &mut Env<'_>, a: &JByteArray<'_>) -> Result<Vec<u8>, ArgError> {
    bytes(env, a, "key")
}

fn value_arg(env: &mut Env<'_>, a: &JByteArray<'_>) -> Result<Vec<u8>, ArgError> {
    bytes(env, a, "value")
}

fn keys_arg(
    env: &mut Env<'_>,
    a: &JObjectArray<'_, JByteArray<'_>>,
) -> Result<Vec<Vec<u8>>, ArgError> {
    byte_arrays(env, a, "key")
}

fn values_arg(
    env: &mut Env<'_>,
    a: &JObjectArray<'_, JByteArray<'_>>,
) -> Result<Vec<Vec<u8>>, ArgError> {
    byte_arrays(env, a, "value")
}

/// A TTL: a negative one is INVALID_ARGUMENT; 0 or above the maximum is
/// INVALID_TTL, as DtKV answers for it. Both name the value given.
fn ttl_arg(_env: &mut Env<'_>, v: &jlong) -> Result<u64, ArgError> {
    let max = dongting_sdk::MAX_TTL_MS;
    match u64::try_from(*v) {
        Ok(t) if (1..=max).contains(&t) => Ok(t),
        Ok(_) => Err(ArgError::Arg(Error::new(
            code::KV_INVALID_TTL,
            format!("INVALID_TTL: ttlMillis must be between 1 and {max}, got {v}"),
        ))),
        Err(_) => ranged(*v, "ttlMillis", 1, max),
    }
}

/// A list page's start-after key: a full key, empty for the first page.
fn start_after_arg(env: &mut Env<'_>, a: &JByteArray<'_>) -> Result<Vec<u8>, ArgError> {
    bytes(env, a, "startAfter")
}

/// A list page's limit: 0 (the server's default) to `MAX_PAGE_LIMIT`.
fn limit_arg(_env: &mut Env<'_>, v: &jint) -> Result<u64, ArgError> {
    ranged(i64::from(*v), "limit", 0, dongting_sdk::MAX_PAGE_LIMIT)
}

dongting_sdk::kv_ops!(ops);

// ---------------------------------------------------------------------------
// Watches.

/// Blocks until a server accepted a watch on `keys` of the group (at most
/// the client's timeout): `TAG_OK, handle` or the error. The key arrays'
/// local references are deleted as they are read.
fn watch_new<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    c: jlong,
    group: jint,
    keys: JObjectArray<'local, JByteArray<'local>>,
    from_index: jlong,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let keys = keys_arg(env, &keys)?;
        let g = u32_arg(group, "groupId")?;
        let from = u64_arg(from_index, "fromIndex")?;
        let entry = sdk(CLIENTS.get(c))?;
        let h = entry.client.watch(g, &refs(&keys), from).map(|watch| {
            WATCHES.insert(WatchEntry {
                watch,
                queue: entry.queue.clone(),
            })
        });
        Ok(encode_handle(env, h)?)
    })
}

/// Starts a wait of up to `timeout_ms` for the watch's next event: null once
/// started (the event, none, or the error arrives through
/// [`await_completions`] with `token`; a [`watch_close`] ends the wait at
/// once with CLOSED), or the encoded error when it could not start.
fn watch_next_async<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    w: jlong,
    token: jlong,
    timeout_ms: jlong,
) -> JResult<JByteArray<'local>> {
    with_args(env, |_env| {
        let timeout = ms_arg(timeout_ms, "timeoutMillis", 0)?;
        let entry = sdk(WATCHES.get(w))?;
        sdk(entry.queue.begin())?;
        let q = entry.queue.clone();
        entry.watch.next_async(
            timeout,
            Box::new(move |r, last| q.push((token, Done::Event(r, last)))),
        );
        Ok(JByteArray::default())
    })
}

/// `TAG_OK, last_index` or the error.
fn watch_last_index<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    w: jlong,
) -> JResult<JByteArray<'local>> {
    match WATCHES.get(w).and_then(|e| e.watch.last_index()) {
        Ok(i) => {
            let mut o = Out::ok();
            o.u64(i);
            o.into_java(env)
        }
        Err(e) => encode_error(env, &e),
    }
}

/// Ends the watch: a wait in progress completes with CLOSED at once, the
/// server is told to forget it (blocks up to the client's timeout) and the
/// handle is forgotten. Idempotent.
fn watch_close<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    w: jlong,
) -> JResult<JByteArray<'local>> {
    let r = match WATCHES.remove(w) {
        Some(e) => e.watch.close(),
        None => Ok(()),
    };
    encode_unit(env, r)
}

// ---------------------------------------------------------------------------
// Locks.

/// A lock handle on `key` (nothing is sent): `TAG_OK, handle` or the error.
fn lock_new<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    c: jlong,
    group: jint,
    key: JByteArray<'local>,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let key = key_arg(env, &key)?;
        let g = u32_arg(group, "groupId")?;
        let entry = sdk(CLIENTS.get(c))?;
        let h = entry.client.create_lock(g, &key).map(|lock| {
            LOCKS.insert(LockEntry {
                lock,
                queue: entry.queue.clone(),
            })
        });
        Ok(encode_handle(env, h)?)
    })
}

/// Blocking and asynchronous lock calls, as [`ops!`] does for the client.
macro_rules! lock_ops {
    ($(
        $blocking:ident / $async_fn:ident ( $($arg:ident => $what:literal),* ) => |$l:ident| $call:expr;
    )*) => {
        $(
            fn $blocking<'local>(
                env: &mut Env<'local>,
                _class: JClass<'local>,
                l: jlong,
                $($arg: jlong),*
            ) -> JResult<JByteArray<'local>> {
                with_args(env, |env| {
                    $(let $arg = u64_arg($arg, $what)?;)*
                    let entry = sdk(LOCKS.get(l))?;
                    let $l = &entry.lock;
                    let f: OpFuture = $call;
                    Ok(encode_result(env, &f.wait_result())?)
                })
            }

            fn $async_fn<'local>(
                env: &mut Env<'local>,
                _class: JClass<'local>,
                l: jlong,
                token: jlong,
                $($arg: jlong),*
            ) -> JResult<JByteArray<'local>> {
                with_args(env, |_env| {
                    $(let $arg = u64_arg($arg, $what)?;)*
                    let entry = sdk(LOCKS.get(l))?;
                    let $l = &entry.lock;
                    let f: OpFuture = $call;
                    sdk(deliver(&entry.queue, token, f))?;
                    Ok(JByteArray::default())
                })
            }
        )*
    };
}

lock_ops! {
    lock_try_lock / lock_try_lock_async (lease => "leaseMillis", wait => "waitTimeoutMillis")
        => |l| l.try_lock_async(lease, wait);
    lock_unlock / lock_unlock_async () => |l| l.unlock_async();
    lock_update_lease / lock_update_lease_async (lease => "leaseMillis")
        => |l| l.update_lease_async(lease);
}

/// `held, lease_rest_ms, token` of this client's hold, packed as
/// `TAG_OK, bool, u64, u64` (local: sends nothing), or CLOSED.
fn lock_state<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    l: jlong,
) -> JResult<JByteArray<'local>> {
    match LOCKS.get(l) {
        Ok(e) => {
            let mut o = Out::ok();
            o.bool(e.lock.is_held());
            o.u64(e.lock.lease_rest_ms());
            o.u64(e.lock.token());
            o.into_java(env)
        }
        Err(e) => encode_error(env, &e),
    }
}

/// Releases the lock if held or queued (blocking) and forgets the handle.
/// Idempotent.
fn lock_close<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    l: jlong,
) -> JResult<JByteArray<'local>> {
    let r = match LOCKS.remove(l) {
        Some(e) => e.lock.close(),
        None => Ok(()),
    };
    encode_unit(env, r)
}

// ---------------------------------------------------------------------------
// Embedded server.

fn server_start<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    rt: jlong,
    config: JByteArray<'local>,
    is_path: bool,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let config = text(env, &config, if is_path { "path" } else { "config" })?;
        let e = sdk(RUNTIMES.get(rt))?;
        let r = if is_path {
            EmbeddedServer::start_file(&e.rt, &config)
        } else {
            EmbeddedServer::start(&e.rt, &config)
        };
        Ok(encode_handle(env, r.map(|s| SERVERS.insert(s)))?)
    })
}

/// `TAG_OK, node_id, service_addr, replicate_addr` or the error.
fn server_info<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    s: jlong,
) -> JResult<JByteArray<'local>> {
    match SERVERS.get(s) {
        Ok(s) => {
            let mut o = Out::ok();
            o.u32(s.node_id());
            o.bytes(s.service_addr().as_bytes());
            o.bytes(s.replicate_addr().as_bytes());
            o.bool(s.is_stopped());
            o.into_java(env)
        }
        Err(e) => encode_error(env, &e),
    }
}

fn server_status<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    s: jlong,
) -> JResult<JByteArray<'local>> {
    match SERVERS.get(s).and_then(|s| s.status()) {
        Ok(st) => {
            let mut o = Out(Vec::with_capacity(64));
            o.status(&st);
            o.into_java(env)
        }
        Err(e) => encode_error(env, &e),
    }
}

/// `TAG_OK, text` (the node's metrics, Prometheus text) or the error.
fn server_metrics<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    s: jlong,
) -> JResult<JByteArray<'local>> {
    match SERVERS.get(s).and_then(|s| s.metrics()) {
        Ok(text) => {
            let mut o = Out::ok();
            o.bytes(text.as_bytes());
            o.into_java(env)
        }
        Err(e) => encode_error(env, &e),
    }
}

fn server_stop<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    s: jlong,
    grace_ms: jlong,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let grace = ms_arg(grace_ms, "graceMillis", 0)?;
        let s = sdk(SERVERS.get(s))?;
        Ok(encode_unit(env, s.stop(Duration::from_millis(grace)))?)
    })
}

/// Forgets the handle (stop it first: dropping the handle does not stop the
/// node; its runtime's shutdown does).
fn server_free<'local>(_env: &mut Env<'local>, _class: JClass<'local>, s: jlong) -> JResult<()> {
    SERVERS.remove(s);
    Ok(())
}

/// `TAG_OK, count, config*` (TOML texts) or the error.
fn local_cluster_configs<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    nodes: jint,
    groups: jni::objects::JIntArray<'local>,
    data_dir: JByteArray<'local>,
) -> JResult<JByteArray<'local>> {
    with_args(env, |env| {
        let nodes = u32_arg(nodes, "nodes")?;
        let dir = text(env, &data_dir, "dataDir")?;
        if groups.is_null() {
            return Err(ArgError::Arg(Error::invalid_argument("groups is null")));
        }
        let n = groups.len(env)?;
        let mut buf = vec![0i32; n];
        groups.get_region(env, 0, &mut buf)?;
        let groups = buf
            .into_iter()
            .map(|g| u32_arg(g, "groupId"))
            .collect::<Result<Vec<u32>, _>>()?;
        match dongting_sdk::local_cluster_configs(nodes, &groups, &dir) {
            Ok(cfgs) => {
                let mut o = Out::ok();
                o.len(cfgs.len());
                for c in &cfgs {
                    o.bytes(c.as_bytes());
                }
                Ok(o.into_java(env)?)
            }
            Err(e) => Ok(encode_error(env, &e)?),
        }
    })
}

/// The symbolic name of an error code as UTF-8.
fn code_name<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
    code: jint,
) -> JResult<JByteArray<'local>> {
    env.byte_array_from_slice(Error::code_name(code).as_bytes())
}

/// Every error code of the SDK's table as UTF-8 lines `NAME=code`, in code order.
fn error_codes<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
) -> JResult<JByteArray<'local>> {
    let text: String = dongting_sdk::codes()
        .iter()
        .map(|c| format!("{}={}\n", c.name, c.code))
        .collect();
    env.byte_array_from_slice(text.as_bytes())
}

/// The names of the operations of `kv_ops!` (snake_case), UTF-8, one per
/// line.
fn kv_op_list<'local>(
    env: &mut Env<'local>,
    _class: JClass<'local>,
) -> JResult<JByteArray<'local>> {
    env.byte_array_from_slice(dongting_sdk::kv_op_names().join("\n").as_bytes())
}

/// The library version as UTF-8.
fn version<'local>(env: &mut Env<'local>, _class: JClass<'local>) -> JResult<JByteArray<'local>> {
    env.byte_array_from_slice(dongting_sdk::VERSION.as_bytes())
}

// ---------------------------------------------------------------------------
// Exports: each `static native` method of io.dongting.Native, type-checked
// against its Java signature and exported under its JNI name.

/// One `native_method!` entry of a `kv_ops!` operation: maps each argument
/// kind to its JNI type (the macro reads the tokens, so they are written
/// out here), then writes the entry.
macro_rules! jvm_entry {
    ($name:ident [$($p:tt)*]) => {
        native_method! { java_type = "io.dongting.Native", static extern fn $name($($p)*) -> jbyte[] }
    };
    ($name:ident [$($p:tt)*] limit: u64 $(, $($rest:tt)*)?) => {
        jvm_entry! { $name [$($p)*, limit: jint] $($($rest)*)? }
    };
    ($name:ident [$($p:tt)*] $arg:ident : u64 $(, $($rest:tt)*)?) => {
        jvm_entry! { $name [$($p)*, $arg: jlong] $($($rest)*)? }
    };
    ($name:ident [$($p:tt)*] $arg:ident : bytes $(, $($rest:tt)*)?) => {
        jvm_entry! { $name [$($p)*, $arg: jbyte[]] $($($rest)*)? }
    };
    ($name:ident [$($p:tt)*] $arg:ident : bytes_list $(, $($rest:tt)*)?) => {
        jvm_entry! { $name [$($p)*, $arg: jbyte[][]] $($($rest)*)? }
    };
}

/// Every native method of `io.dongting.Native`: those of the `kv_ops!`
/// operations (blocking and token-based), then `@extra`.
macro_rules! jvm_methods {
    ($(
        $blocking:ident / $async_fn:ident ( group: group $(, $arg:ident : $kind:ident)* );
    )* @extra { $($extra:tt)* }) => {
        /// Every native method of `io.dongting.Native`.
        pub const NATIVE_METHODS: &[NativeMethod<'static>] = &[
            $(
                jvm_entry! { $blocking [c: jlong, g: jint] $($arg: $kind),* },
                jvm_entry! { $async_fn [c: jlong, t: jlong, g: jint] $($arg: $kind),* },
            )*
            $($extra)*
        ];
    };
}

dongting_sdk::kv_ops! {
    jvm_methods,
    native_method! { java_type = "io.dongting.Native", static extern fn runtime_new(workers: jint) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn runtime_shutdown(rt: jlong, timeout: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn runtime_free(rt: jlong) },
    native_method! { java_type = "io.dongting.Native", static extern fn await_completions(rt: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn runtime_pending(rt: jlong) -> jlong },
    native_method! { java_type = "io.dongting.Native", static extern fn live_handles() -> jlong },
    native_method! { java_type = "io.dongting.Native", static extern fn client_new(rt: jlong, servers: jbyte[], timeout: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn client_id(c: jlong) -> jlong },
    native_method! { java_type = "io.dongting.Native", static extern fn client_close(c: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn watch_new(c: jlong, g: jint, k: jbyte[][], from: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn watch_next_async(w: jlong, t: jlong, timeout: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn watch_last_index(w: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn watch_close(w: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_new(c: jlong, g: jint, k: jbyte[]) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_try_lock(l: jlong, lease: jlong, wait: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_try_lock_async(l: jlong, t: jlong, lease: jlong, wait: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_unlock(l: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_unlock_async(l: jlong, t: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_update_lease(l: jlong, lease: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_update_lease_async(l: jlong, t: jlong, lease: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_state(l: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn lock_close(l: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn server_start(rt: jlong, config: jbyte[], is_path: jboolean) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn server_info(s: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn server_status(s: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn server_metrics(s: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn server_stop(s: jlong, grace: jlong) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn server_free(s: jlong) },
    native_method! { java_type = "io.dongting.Native", static extern fn local_cluster_configs(nodes: jint, groups: jint[], dir: jbyte[]) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn code_name(code: jint) -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn error_codes() -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn version() -> jbyte[] },
    native_method! { java_type = "io.dongting.Native", static extern fn kv_op_list() -> jbyte[] },
}
