//! `libdongting`: the C ABI over `dongting-sdk`, a mechanical `extern "C"`
//! projection of the facade. `include/dongting.h` is generated from this file
//! by cbindgen (see `cbindgen.toml`); the rules every function follows are in
//! its preamble and in docs/c-api.md.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
// Every pointer argument is checked for NULL and documented in the header;
// marking each function `unsafe` would not tell a C caller anything more.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dongting_sdk::{EmbeddedServer, Error, KvClient, OpFuture, Runtime, Watch, WatchEvent};

/// The API version this header describes. Pass it to `dt_runtime_new`.
pub const DT_API_VERSION: u32 = 1;

/// Success.
pub const DT_OK: i32 = 0;
/// RPC status 1: the request is invalid; retrying it fails again.
pub const DT_E_CLIENT_ERROR: i32 = 1;
/// RPC status 2: the server failed while executing; the effect is unknown.
pub const DT_E_SYS_ERROR: i32 = 2;
/// RPC status 3: unknown command.
pub const DT_E_COMMAND_NOT_SUPPORTED: i32 = 3;
/// RPC status 4: the server or group is still starting (retryable).
pub const DT_E_NOT_INIT: i32 = 4;
/// RPC status 5: the server is shutting down (retryable).
pub const DT_E_STOPPING: i32 = 5;
/// RPC status 6: in-flight limit reached (retryable).
pub const DT_E_FLOW_CONTROL: i32 = 6;
/// RPC status 7: the node does not lead the group; see the leader hint.
pub const DT_E_NOT_RAFT_LEADER: i32 = 7;
/// RPC status 8: no such group.
pub const DT_E_RAFT_GROUP_NOT_FOUND: i32 = 8;
/// RPC status 9: the group is stopped (retryable).
pub const DT_E_RAFT_GROUP_STOPPED: i32 = 9;
/// RPC status 10: the deadline passed; a write's effect is unknown.
pub const DT_E_TIMEOUT: i32 = 10;
/// RPC status 11: framing rules broken.
pub const DT_E_PROTOCOL_ERROR: i32 = 11;
/// RPC status 12: connecting failed or the connection was lost.
pub const DT_E_NETWORK_ERROR: i32 = 12;
/// RPC status 13: the client was closed.
pub const DT_E_CLOSED: i32 = 13;
/// A NULL pointer, bad UTF-8, an out-of-range integer or an unparsable
/// address; nothing was done.
pub const DT_E_INVALID_ARGUMENT: i32 = 900;
/// The future was cancelled (`dt_future_cancel`, `dt_future_free`).
pub const DT_E_CANCELLED: i32 = 901;
/// The runtime was shut down before or while the call ran.
pub const DT_E_RUNTIME_SHUT_DOWN: i32 = 902;
/// The runtime was created by another process: this is a `fork()` child.
pub const DT_E_FORKED: i32 = 903;
/// `dt_runtime_new` was given an API version this library does not provide.
pub const DT_E_UNSUPPORTED_API_VERSION: i32 = 904;
/// An embedded server's configuration is invalid (the message names the field).
pub const DT_E_CONFIG_ERROR: i32 = 905;
/// An embedded server could not start (ports, data directory, recovery).
pub const DT_E_SERVER_START_FAILED: i32 = 906;
/// Threads or memory could not be obtained.
pub const DT_E_RESOURCE: i32 = 907;
/// The future's result is not of the kind the accessor reads.
pub const DT_E_WRONG_RESULT_KIND: i32 = 908;
/// The future has not completed (or `dt_future_wait` timed out).
pub const DT_E_PENDING: i32 = 909;
/// The embedded server was already stopped.
pub const DT_E_SERVER_STOPPED: i32 = 910;
/// A write failed after an attempt of it may have reached a server: it may
/// or may not have been applied (never retryable; read the keys to learn).
pub const DT_E_UNKNOWN_OUTCOME: i32 = 911;
/// Offset of DtKV error codes: DtKV code n is reported as 1000 + n.
pub const DT_E_KV_BASE: i32 = 1000;
/// DtKV: an unexpected internal condition; the message says what.
pub const DT_E_KV_INTERNAL: i32 = 1001;
/// DtKV: the key does not exist.
pub const DT_E_KV_NOT_FOUND: i32 = 1002;
/// DtKV: a value operation hit a directory.
pub const DT_E_KV_IS_DIR: i32 = 1004;
/// DtKV: a directory operation hit a value.
pub const DT_E_KV_NOT_DIR: i32 = 1005;
/// DtKV: the key's parent is not a directory.
pub const DT_E_KV_PARENT_NOT_DIR: i32 = 1006;
/// DtKV: the key breaks the key syntax rules (or is not UTF-8).
pub const DT_E_KV_INVALID_KEY: i32 = 1007;
/// DtKV: the value is not acceptable (e.g. empty for put).
pub const DT_E_KV_INVALID_VALUE: i32 = 1008;
/// DtKV: the parent directory does not exist.
pub const DT_E_KV_PARENT_NOT_FOUND: i32 = 1009;
/// DtKV: remove of a directory that has children.
pub const DT_E_KV_DIR_NOT_EMPTY: i32 = 1010;
/// DtKV: the key is longer than the limit.
pub const DT_E_KV_KEY_TOO_LONG: i32 = 1011;
/// DtKV: the value is larger than the limit.
pub const DT_E_KV_VALUE_TOO_LARGE: i32 = 1012;
/// DtKV: compareAndSet found a different value.
pub const DT_E_KV_CAS_MISMATCH: i32 = 1014;
/// DtKV: the temporary node belongs to another client.
pub const DT_E_KV_NOT_OWNER: i32 = 1018;
/// DtKV: a TTL operation on a node that is not temporary.
pub const DT_E_KV_NOT_TEMP_NODE: i32 = 1019;
/// DtKV: a plain write (put, mkdir, compareAndSet) on a temporary node.
pub const DT_E_KV_IS_TEMP_NODE: i32 = 1020;
/// DtKV: a TTL of zero or above the maximum.
pub const DT_E_KV_INVALID_TTL: i32 = 1022;
/// DtKV: a lock may not be created under a temporary directory.
pub const DT_E_KV_UNDER_TEMP_DIR: i32 = 1024;
/// DtKV: the key's parent is a lock node, which has no children.
pub const DT_E_KV_PARENT_IS_LOCK: i32 = 1025;
/// DtKV: a lock operation on a node that is not a lock.
pub const DT_E_KV_NOT_LOCK_NODE: i32 = 1026;
/// DtKV: a value or directory operation on a lock node.
pub const DT_E_KV_IS_LOCK: i32 = 1027;
/// DtKV: the bytes are not a valid DtKV command.
pub const DT_E_KV_INVALID_COMMAND: i32 = 1100;
/// DtKV: a batch with no keys or more keys than the limit.
pub const DT_E_KV_TOO_MANY_KEYS: i32 = 1101;
/// DtKV: a resent write whose first result is no longer kept; this attempt
/// was not applied, whether an earlier one was is unknown.
pub const DT_E_KV_SEQ_TOO_OLD: i32 = 1102;
/// DtKV: the state machine was given a raft index not above the last one.
pub const DT_E_KV_INDEX_NOT_INCREASING: i32 = 1103;
/// DtKV: a watch resume point older than the retained event history; re-read.
pub const DT_E_KV_HISTORY_COMPACTED: i32 = 1104;
/// DtKV: a malformed, truncated or out-of-order snapshot stream.
pub const DT_E_KV_INVALID_SNAPSHOT: i32 = 1105;
/// DtKV: the lock already has the maximum number of waiters (retryable).
pub const DT_E_KV_TOO_MANY_WAITERS: i32 = 1106;

/// Result kinds (`dt_reply.kind`).
pub const DT_REPLY_DONE: u32 = 0;
/// A write.
pub const DT_REPLY_WRITE: u32 = 1;
/// A get: 0 or 1 node.
pub const DT_REPLY_GET: u32 = 2;
/// A list: the children.
pub const DT_REPLY_LIST: u32 = 3;
/// A batch get: one node and one code per key.
pub const DT_REPLY_BATCH_GET: u32 = 4;
/// A server start: read it with `dt_future_server`.
pub const DT_REPLY_SERVER: u32 = 5;
/// A tryLock: read the fencing token with `dt_future_token`.
pub const DT_REPLY_LOCK: u32 = 6;

/// Node kinds (`dt_node.kind`).
pub const DT_NODE_ABSENT: u32 = 0;
/// A value.
pub const DT_NODE_VALUE: u32 = 1;
/// A directory.
pub const DT_NODE_DIR: u32 = 2;
/// A lock.
pub const DT_NODE_LOCK: u32 = 3;

/// Roles (`dt_group_status.role`).
pub const DT_ROLE_UNKNOWN: u32 = 0;
/// Follower.
pub const DT_ROLE_FOLLOWER: u32 = 1;
/// Candidate.
pub const DT_ROLE_CANDIDATE: u32 = 2;
/// Leader.
pub const DT_ROLE_LEADER: u32 = 3;
/// Observer.
pub const DT_ROLE_OBSERVER: u32 = 4;
/// Stopped.
pub const DT_ROLE_STOPPED: u32 = 5;

/// The runtime: IO threads that run every client and embedded server made
/// from it. Create with `dt_runtime_new`, stop with `dt_runtime_shutdown`,
/// release with `dt_runtime_free`.
pub struct dt_runtime {
    rt: Runtime,
}

/// A DtKV client. Create with `dt_client_new`, release with `dt_client_free`.
pub struct dt_client {
    c: KvClient,
}

/// A distributed lock on one key, held through the session of the client
/// that created it (docs/kv.md, "Locks"). Create with `dt_lock_new`, release
/// with `dt_lock_free`.
pub struct dt_lock {
    l: dongting_sdk::Lock,
}

/// A node running in this process. Get one from a `dt_server_start` future
/// with `dt_future_server`, release with `dt_server_free` (which does not stop
/// the node: `dt_server_stop` does).
pub struct dt_server {
    s: EmbeddedServer,
}

/// A watch on keys of one group (`dt_watch_new`). Release with
/// `dt_watch_free`. One thread at a time may call `dt_watch_next` on it.
pub struct dt_watch {
    w: Watch,
    /// The item the last `dt_watch_next` returned: its bytes stay valid until
    /// the next call or the free.
    last: std::sync::Mutex<Option<WatchEvent>>,
}

/// The usual per-call timeout of `dt_client_new`, in milliseconds.
pub const DT_DEFAULT_TIMEOUT_MS: u32 = 5_000;
/// The longest per-call timeout (`dt_client_new`) and the longest wait of
/// `dt_watch_next`, in milliseconds: one day.
pub const DT_MAX_TIMEOUT_MS: u32 = 86_400_000;
/// The longest TTL (`dt_kv_put_temp`, `dt_kv_make_temp_dir`,
/// `dt_kv_update_ttl`), lock lease and lock wait, in milliseconds: 30 days.
pub const DT_MAX_TTL_MS: u64 = 2_592_000_000;

const _: () = assert!(DT_DEFAULT_TIMEOUT_MS as u64 == dongting_sdk::DEFAULT_TIMEOUT_MS);
const _: () = assert!(DT_MAX_TIMEOUT_MS as u64 == dongting_sdk::MAX_TIMEOUT_MS);
const _: () = assert!(DT_MAX_TTL_MS == dongting_sdk::MAX_TTL_MS);

/// Watch item kinds (`dt_watch_event.kind`): a key changed.
pub const DT_WATCH_CHANGED: u32 = 0;
/// The server's history no longer holds events the watch had not seen:
/// re-read the watched keys; events continue after `index`.
pub const DT_WATCH_COMPACTED: u32 = 1;

/// One item of a watch. `key` and `value` point into the watch handle and
/// stay valid until the next `dt_watch_next` on it or `dt_watch_free`.
#[repr(C)]
pub struct dt_watch_event {
    /// One of `DT_WATCH_*`.
    pub kind: u32,
    /// Changed: one of `DT_NODE_*` (the state after the write).
    pub node_kind: u32,
    /// Changed: the write's raft index. Compacted: events continue after it.
    pub index: u64,
    /// Changed: the key (not NUL-terminated).
    pub key: *const u8,
    /// Key length.
    pub key_len: usize,
    /// Changed: the value after the write (empty unless a value).
    pub value: *const u8,
    /// Value length.
    pub value_len: usize,
    /// Compacted: the lowest index the server's history resumes after.
    pub history_floor: u64,
}

/// The pending result of a call. Release with `dt_future_free`.
pub struct dt_future {
    f: OpFuture,
}

/// A borrowed byte string: `len` bytes at `ptr` (`ptr` may be NULL when
/// `len` is 0). Read during the call only.
#[repr(C)]
pub struct dt_slice {
    /// First byte.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

/// The scalar part of a successful result.
#[repr(C)]
#[derive(Default)]
pub struct dt_reply {
    /// One of `DT_REPLY_*`.
    pub kind: u32,
    /// put, mkdir: 1 when the node was created, 0 when it existed.
    pub created: u32,
    /// Raft index the answer reflects.
    pub index: u64,
    /// putTemp, makeTempDir, updateTtl: new expiry (leader wall-clock ms).
    pub deadline_ms: u64,
    /// Number of nodes (`dt_future_node`).
    pub node_count: usize,
    /// Number of per-key codes (`dt_future_code`).
    pub code_count: usize,
}

/// One node of a result. `key` and `value` point into the future's result
/// and stay valid until the future is freed.
#[repr(C)]
pub struct dt_node {
    /// The full key (not NUL-terminated).
    pub key: *const u8,
    /// Key length.
    pub key_len: usize,
    /// The value (not NUL-terminated; empty for directories).
    pub value: *const u8,
    /// Value length.
    pub value_len: usize,
    /// One of `DT_NODE_*`.
    pub kind: u32,
    /// Raft index of the creation.
    pub create_index: u64,
    /// Leader wall-clock ms of the creation.
    pub create_time_ms: u64,
    /// Raft index of the last change.
    pub update_index: u64,
    /// Leader wall-clock ms of the last change.
    pub update_time_ms: u64,
    /// Temporary node: expiry deadline (leader wall-clock ms); 0 otherwise.
    pub ttl_deadline_ms: u64,
    /// Temporary node: owning client id; 0 otherwise.
    pub ttl_owner: u64,
}

/// One group as an embedded server sees it.
#[repr(C)]
#[derive(Default)]
pub struct dt_group_status {
    /// One of `DT_ROLE_*`.
    pub role: u32,
    /// 1 when a leader is known and its term's first entry is applied here.
    pub ready: u32,
    /// The leader's node id, 0 when unknown.
    pub leader_id: u32,
    /// Current term.
    pub term: u64,
    /// Highest committed index known.
    pub commit_index: u64,
    /// Highest applied index.
    pub applied_index: u64,
}

/// Called once when a future completes; see `dt_future_set_callback`.
pub type dt_callback = Option<unsafe extern "C" fn(future: *mut dt_future, user_data: *mut c_void)>;

static LIVE_HANDLES: AtomicI64 = AtomicI64::new(0);

fn new_handle<T>(v: T) -> *mut T {
    LIVE_HANDLES.fetch_add(1, Ordering::SeqCst);
    Box::into_raw(Box::new(v))
}

fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        LIVE_HANDLES.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: `p` came from `Box::into_raw` in `new_handle` and the caller
        // gives up its handle here (documented: free exactly once).
        drop(unsafe { Box::from_raw(p) });
    }
}

fn future(f: OpFuture) -> *mut dt_future {
    new_handle(dt_future { f })
}

fn failed(code: i32, msg: &str) -> *mut dt_future {
    future(OpFuture::ready(Err(Error::new(code, msg))))
}

fn null_arg(what: &str) -> *mut dt_future {
    failed(DT_E_INVALID_ARGUMENT, &format!("{what} is NULL"))
}

/// Borrows `len` bytes at `p`; `None` when `p` is NULL and `len` is not 0.
fn bytes<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the caller promises `p` points to `len` readable bytes for the
    // duration of the call (header: borrowed slices); checked non-NULL above.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}

fn slices<'a>(p: *const dt_slice, count: usize) -> Option<Vec<&'a [u8]>> {
    if count == 0 {
        return Some(Vec::new());
    }
    if p.is_null() || count > isize::MAX as usize / std::mem::size_of::<dt_slice>() {
        return None;
    }
    // SAFETY: the caller promises `count` readable `dt_slice` values at `p`
    // for the duration of the call; checked non-NULL above.
    let s = unsafe { std::slice::from_raw_parts(p, count) };
    s.iter().map(|x| bytes(x.ptr, x.len)).collect()
}

fn as_ref<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: a non-NULL handle pointer is one this library returned and the
    // caller has not freed (header: handles are valid until their `_free`).
    unsafe { p.as_ref() }
}

fn write_out<T>(out: *mut T, v: T) -> bool {
    if out.is_null() {
        return false;
    }
    // SAFETY: `out` is non-NULL and the caller promises it points to writable
    // storage for a `T` (header: out-parameters).
    unsafe { out.write(v) };
    true
}

/// The highest API version this library provides.
#[unsafe(no_mangle)]
pub extern "C" fn dt_api_version() -> u32 {
    DT_API_VERSION
}

/// The library version, a static NUL-terminated string (never freed).
#[unsafe(no_mangle)]
pub extern "C" fn dt_version() -> *const c_char {
    static V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// The symbolic name of an error code (`"NOT_FOUND"`, `"TIMEOUT"`, ... or
/// `"UNKNOWN"`), a static NUL-terminated string (never freed).
#[unsafe(no_mangle)]
pub extern "C" fn dt_error_name(code: i32) -> *const c_char {
    let name = Error::code_name(code);
    // Names are 'static; give each a NUL-terminated copy once.
    static NAMES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, &'static [u8]>>,
    > = std::sync::OnceLock::new();
    let map = NAMES.get_or_init(Default::default);
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let s = m.entry(name).or_insert_with(|| {
        let mut v = name.as_bytes().to_vec();
        v.push(0);
        Box::leak(v.into_boxed_slice())
    });
    s.as_ptr().cast()
}

/// Number of handles (runtimes, clients, servers, futures) created and not
/// yet freed, in this process. 0 after a program freed everything.
#[unsafe(no_mangle)]
pub extern "C" fn dt_live_handles() -> i64 {
    LIVE_HANDLES.load(Ordering::SeqCst)
}

/// Creates a runtime. `api_version` must be `DT_API_VERSION` (1);
/// `worker_threads` 0 picks one per CPU (at most 4), else 1 to 256.
/// Returns `DT_OK` and stores a new handle in `*out`, or an error code
/// (`DT_E_UNSUPPORTED_API_VERSION`, `DT_E_INVALID_ARGUMENT`, `DT_E_RESOURCE`)
/// and leaves `*out` untouched.
#[unsafe(no_mangle)]
pub extern "C" fn dt_runtime_new(
    api_version: u32,
    worker_threads: u32,
    out: *mut *mut dt_runtime,
) -> i32 {
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    if api_version != DT_API_VERSION {
        return DT_E_UNSUPPORTED_API_VERSION;
    }
    match Runtime::new(worker_threads) {
        Ok(rt) => {
            write_out(out, new_handle(dt_runtime { rt }));
            DT_OK
        }
        Err(e) => e.code(),
    }
}

/// Shuts the runtime down: futures still pending complete with
/// `DT_E_RUNTIME_SHUT_DOWN` (their callbacks fire, on this thread or an IO
/// thread, before this returns), embedded servers still running are stopped,
/// and the IO threads are joined (waiting up to `timeout_ms`). Later calls on
/// it, its clients and servers fail with `DT_E_RUNTIME_SHUT_DOWN`. Idempotent.
/// Blocks; must not be called from a callback (there it returns at once
/// without waiting). Returns `DT_OK`, `DT_E_INVALID_ARGUMENT` or `DT_E_FORKED`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_runtime_shutdown(rt: *mut dt_runtime, timeout_ms: u32) -> i32 {
    match as_ref(rt) {
        Some(r) => match r.rt.shutdown(Duration::from_millis(u64::from(timeout_ms))) {
            Ok(()) => DT_OK,
            Err(e) => e.code(),
        },
        None => DT_E_INVALID_ARGUMENT,
    }
}

/// Releases a runtime handle (NULL is ignored). Clients and servers made
/// from it keep the runtime running until they are freed too; without
/// `dt_runtime_shutdown`, the last release stops it without waiting.
#[unsafe(no_mangle)]
pub extern "C" fn dt_runtime_free(rt: *mut dt_runtime) {
    free_handle(rt);
}

/// Creates a client for `servers` (`host:port` service addresses,
/// comma-separated, borrowed for the call) whose calls take at most
/// `timeout_ms` each, retries included (1 to `DT_MAX_TIMEOUT_MS`; 0 is
/// refused, `DT_DEFAULT_TIMEOUT_MS` is the usual choice). Connects on first
/// use. Returns `DT_OK` and a new handle in `*out`, or `DT_E_INVALID_ARGUMENT`
/// (also for an address that does not resolve or has port 0),
/// `DT_E_RUNTIME_SHUT_DOWN`, `DT_E_FORKED`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_client_new(
    rt: *mut dt_runtime,
    servers: *const u8,
    servers_len: usize,
    timeout_ms: u32,
    out: *mut *mut dt_client,
) -> i32 {
    let (Some(r), Some(s)) = (as_ref(rt), bytes(servers, servers_len)) else {
        return DT_E_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    let Ok(s) = std::str::from_utf8(s) else {
        return DT_E_INVALID_ARGUMENT;
    };
    match KvClient::new(&r.rt, s, u64::from(timeout_ms)) {
        Ok(c) => {
            write_out(out, new_handle(dt_client { c }));
            DT_OK
        }
        Err(e) => e.code(),
    }
}

/// Closes the client: new calls fail with `DT_E_CLOSED`; connections close
/// once calls in flight finish (up to 1 s). Returns a future (never NULL).
#[unsafe(no_mangle)]
pub extern "C" fn dt_client_close(c: *mut dt_client) -> *mut dt_future {
    match as_ref(c) {
        Some(c) => future(c.c.close_async()),
        None => null_arg("client"),
    }
}

/// Releases a client handle (NULL is ignored). Calls in flight go on and
/// their futures still complete.
#[unsafe(no_mangle)]
pub extern "C" fn dt_client_free(c: *mut dt_client) {
    free_handle(c);
}

macro_rules! with_client {
    ($c:expr, |$cl:ident| $body:expr) => {
        match as_ref($c) {
            Some($cl) => $body,
            None => null_arg("client"),
        }
    };
}

macro_rules! arg {
    ($e:expr, $what:expr) => {
        match $e {
            Some(v) => v,
            None => return null_arg($what),
        }
    };
}

/// put: sets `key` to `value` (parent directory must exist). Reply: `index`,
/// `created`. Every `dt_kv_*` function borrows its byte arguments for the call
/// only and returns a future (never NULL), also for invalid arguments (it then
/// completes at once with the error).
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_put(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    let v = arg!(bytes(value, value_len), "value");
    with_client!(c, |cl| future(cl.c.put_async(group, k, v)))
}

/// get: reads `key` (linearizable). Reply: 1 node, or 0 when absent.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_get(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    with_client!(c, |cl| future(cl.c.get_async(group, k)))
}

/// remove: removes a value or an empty directory (`DT_E_KV_NOT_FOUND` when
/// absent).
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_remove(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    with_client!(c, |cl| future(cl.c.remove_async(group, k)))
}

/// mkdir: creates a directory. Reply: `created` (0 when it existed).
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_mkdir(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    with_client!(c, |cl| future(cl.c.mkdir_async(group, k)))
}

/// list: the children of directory `dir` (empty: the root), in key order.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_list(
    c: *mut dt_client,
    group: u32,
    dir: *const u8,
    dir_len: usize,
) -> *mut dt_future {
    let d = arg!(bytes(dir, dir_len), "dir");
    with_client!(c, |cl| future(cl.c.list_async(group, d)))
}

/// listPage: one page of directory `dir`'s children, those whose key sorts
/// after `start_after` (empty: from the first child), at most `limit` of them
/// (0: 1,000; at most 10,000, else `DT_E_INVALID_ARGUMENT`) and under the
/// server's byte cap for one answer, in key order. `dt_future_more` says
/// whether children follow; pass the page's last key as the next
/// `start_after`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_list_page(
    c: *mut dt_client,
    group: u32,
    dir: *const u8,
    dir_len: usize,
    start_after: *const u8,
    start_after_len: usize,
    limit: u32,
) -> *mut dt_future {
    let d = arg!(bytes(dir, dir_len), "dir");
    let a = arg!(bytes(start_after, start_after_len), "start_after");
    with_client!(c, |cl| future(cl.c.list_page_async(
        group,
        d,
        a,
        u64::from(limit)
    )))
}

/// batchPut: sets `count` keys to values in one raft entry. `keys` and
/// `values` are arrays of `count` slices. Reply: one code per key.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_batch_put(
    c: *mut dt_client,
    group: u32,
    keys: *const dt_slice,
    values: *const dt_slice,
    count: usize,
) -> *mut dt_future {
    let k = arg!(slices(keys, count), "keys");
    let v = arg!(slices(values, count), "values");
    with_client!(c, |cl| future(cl.c.batch_put_async(group, &k, &v)))
}

/// batchGet: reads `count` keys. Reply: one node (kind `DT_NODE_ABSENT` when
/// missing) and one code per key.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_batch_get(
    c: *mut dt_client,
    group: u32,
    keys: *const dt_slice,
    count: usize,
) -> *mut dt_future {
    let k = arg!(slices(keys, count), "keys");
    with_client!(c, |cl| future(cl.c.batch_get_async(group, &k)))
}

/// batchRemove: removes `count` keys in one raft entry. Reply: one code per key.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_batch_remove(
    c: *mut dt_client,
    group: u32,
    keys: *const dt_slice,
    count: usize,
) -> *mut dt_future {
    let k = arg!(slices(keys, count), "keys");
    with_client!(c, |cl| future(cl.c.batch_remove_async(group, &k)))
}

/// compareAndSet: sets `key` to `new_value` if its value is `expected`
/// (empty `expected`: must be absent; empty `new_value`: delete). A different
/// value fails with `DT_E_KV_CAS_MISMATCH`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_compare_and_set(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
    expected: *const u8,
    expected_len: usize,
    new_value: *const u8,
    new_value_len: usize,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    let e = arg!(bytes(expected, expected_len), "expected");
    let n = arg!(bytes(new_value, new_value_len), "new_value");
    with_client!(c, |cl| future(cl.c.compare_and_set_async(group, k, e, n)))
}

/// putTemp: a temporary value owned by this client, removed `ttl_ms` after
/// this write unless re-armed (`ttl_ms` 1 to `DT_MAX_TTL_MS`, else
/// `DT_E_KV_INVALID_TTL`, as for every TTL below). Reply: `deadline_ms`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_put_temp(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    let v = arg!(bytes(value, value_len), "value");
    with_client!(c, |cl| future(cl.c.put_temp_async(group, k, v, ttl_ms)))
}

/// makeTempDir: a temporary directory whose subtree is removed when its TTL
/// passes. Reply: `deadline_ms`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_make_temp_dir(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
    ttl_ms: u64,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    with_client!(c, |cl| future(cl.c.make_temp_dir_async(group, k, ttl_ms)))
}

/// updateTtl: re-arms a temporary node's TTL from now (owner only). Reply:
/// `deadline_ms`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_kv_update_ttl(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
    ttl_ms: u64,
) -> *mut dt_future {
    let k = arg!(bytes(key, key_len), "key");
    with_client!(c, |cl| future(cl.c.update_ttl_async(group, k, ttl_ms)))
}

/// A handle on the lock at `key` in `group`, used through client `c`'s
/// session; nothing is sent until `dt_lock_try_lock`. The handle stays usable
/// after `dt_client_free` until the runtime shuts down. Returns `DT_OK` and a
/// new handle in `*out`, `DT_E_KV_INVALID_KEY`, or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_new(
    c: *mut dt_client,
    group: u32,
    key: *const u8,
    key_len: usize,
    out: *mut *mut dt_lock,
) -> i32 {
    let (Some(cl), Some(k)) = (as_ref(c), bytes(key, key_len)) else {
        return DT_E_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    match cl.c.create_lock(group, k) {
        Ok(l) => {
            write_out(out, new_handle(dt_lock { l }));
            DT_OK
        }
        Err(e) => e.code(),
    }
}

/// tryLock: acquires the lock with a lease of `lease_ms` (1 to
/// `DT_MAX_TTL_MS`), waiting up to `wait_timeout_ms` (0: not at all; at most
/// `DT_MAX_TTL_MS`) behind its holder; `DT_E_INVALID_ARGUMENT` outside these
/// ranges. Returns a future (never NULL) of kind `DT_REPLY_LOCK`:
/// `dt_future_token` gives the fencing token, 0 when the wait ended without
/// the lock.
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_try_lock(
    l: *mut dt_lock,
    lease_ms: u64,
    wait_timeout_ms: u64,
) -> *mut dt_future {
    match as_ref(l) {
        Some(l) => future(l.l.try_lock_async(lease_ms, wait_timeout_ms)),
        None => null_arg("lock"),
    }
}

/// unlock: releases the lock or leaves its queue; succeeds when this client
/// neither holds nor waits for it. Returns a future (never NULL).
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_unlock(l: *mut dt_lock) -> *mut dt_future {
    match as_ref(l) {
        Some(l) => future(l.l.unlock_async()),
        None => null_arg("lock"),
    }
}

/// updateLease: extends the lease to `lease_ms` (1 to `DT_MAX_TTL_MS`) from
/// now; fails with `DT_E_KV_NOT_OWNER` (or `DT_E_KV_NOT_FOUND`) when the lock
/// is no longer held. Returns a future (never NULL).
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_update_lease(l: *mut dt_lock, lease_ms: u64) -> *mut dt_future {
    match as_ref(l) {
        Some(l) => future(l.l.update_lease_async(lease_ms)),
        None => null_arg("lock"),
    }
}

/// 1 while this client holds the lock by its own count (acquired, lease
/// counted from the request that set it not over), else 0 (also for NULL).
/// Local: sends nothing.
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_is_held(l: *const dt_lock) -> i32 {
    as_ref(l).map_or(0, |l| i32::from(l.l.is_held()))
}

/// Milliseconds left of the lease by this client's count (0 when not held)
/// in `*out`. Returns `DT_OK` or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_lease_rest_ms(l: *const dt_lock, out: *mut u64) -> i32 {
    match as_ref(l) {
        Some(l) if write_out(out, l.l.lease_rest_ms()) => DT_OK,
        _ => DT_E_INVALID_ARGUMENT,
    }
}

/// Releases a lock handle (NULL is ignored). It does not unlock: the lock
/// is held until `dt_lock_unlock` or until its lease passes.
#[unsafe(no_mangle)]
pub extern "C" fn dt_lock_free(l: *mut dt_lock) {
    free_handle(l);
}

/// Starts a node in this process from TOML configuration text (borrowed for
/// the call; see docs/server.md; a relative `data_dir` is relative to the
/// current directory). Returns a future (never NULL) of kind
/// `DT_REPLY_SERVER`; read the server with `dt_future_server`. Errors:
/// `DT_E_CONFIG_ERROR`, `DT_E_SERVER_START_FAILED`, `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_start(
    rt: *mut dt_runtime,
    toml: *const u8,
    toml_len: usize,
) -> *mut dt_future {
    let t = arg!(bytes(toml, toml_len), "toml");
    let Some(r) = as_ref(rt) else {
        return null_arg("runtime");
    };
    match std::str::from_utf8(t) {
        Ok(t) => future(EmbeddedServer::start_async(&r.rt, t)),
        Err(_) => failed(DT_E_INVALID_ARGUMENT, "the configuration is not UTF-8"),
    }
}

/// Like `dt_server_start` with the configuration in the file at `path`
/// (borrowed; a relative `data_dir` is relative to the file's directory).
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_start_file(
    rt: *mut dt_runtime,
    path: *const u8,
    path_len: usize,
) -> *mut dt_future {
    let p = arg!(bytes(path, path_len), "path");
    let Some(r) = as_ref(rt) else {
        return null_arg("runtime");
    };
    match std::str::from_utf8(p) {
        Ok(p) => future(EmbeddedServer::start_file_async(&r.rt, p)),
        Err(_) => failed(DT_E_INVALID_ARGUMENT, "the path is not UTF-8"),
    }
}

/// Stores a new handle on the started server in `*out`. Returns `DT_OK`,
/// `DT_E_PENDING`, the start's error code, `DT_E_WRONG_RESULT_KIND`, or
/// `DT_E_INVALID_ARGUMENT`. Each call makes a new handle (free each).
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_server(f: *const dt_future, out: *mut *mut dt_server) -> i32 {
    let Some(f) = as_ref(f) else {
        return DT_E_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    match f.f.result() {
        None => DT_E_PENDING,
        Some(Err(e)) => e.code(),
        Some(Ok(r)) => match &r.server {
            Some(s) => {
                write_out(out, new_handle(dt_server { s: s.clone() }));
                DT_OK
            }
            None => DT_E_WRONG_RESULT_KIND,
        },
    }
}

/// This server's node id in `*out`. Returns `DT_OK` or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_node_id(s: *const dt_server, out: *mut u32) -> i32 {
    match as_ref(s) {
        Some(s) if write_out(out, s.s.node_id()) => DT_OK,
        _ => DT_E_INVALID_ARGUMENT,
    }
}

fn copy_str(text: &str, buf: *mut c_char, buf_len: usize, needed: *mut usize) -> i32 {
    let n = text.len() + 1;
    if !needed.is_null() {
        write_out(needed, n);
    }
    if buf.is_null() || buf_len < n {
        return DT_E_INVALID_ARGUMENT;
    }
    // SAFETY: `buf` is non-NULL with room for `buf_len >= n` bytes (caller's
    // promise); source and destination cannot overlap (ours is a Rust String).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    DT_OK
}

/// Copies the service address (`ip:port`, NUL-terminated) into `buf`
/// (`buf_len` bytes). `*needed`, when `needed` is not NULL, gets the size
/// required including the NUL. Returns `DT_OK`, or `DT_E_INVALID_ARGUMENT`
/// when a handle is NULL or `buf` is too small.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_service_addr(
    s: *const dt_server,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> i32 {
    match as_ref(s) {
        Some(s) => copy_str(&s.s.service_addr(), buf, buf_len, needed),
        None => DT_E_INVALID_ARGUMENT,
    }
}

/// Copies the node's metrics (Prometheus/OpenMetrics text, what its HTTP
/// port's `GET /metrics` serves; NUL-terminated) into `buf` (`buf_len`
/// bytes). `*needed`, when `needed` is not NULL, gets the size required
/// including the NUL: call with `buf` NULL to learn it, then again with a
/// buffer somewhat larger (numbers may grow between the calls). Returns
/// `DT_OK`, `DT_E_INVALID_ARGUMENT` (a NULL handle, `buf` NULL or too small),
/// `DT_E_RUNTIME_SHUT_DOWN` or `DT_E_FORKED`. Never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_metrics(
    s: *const dt_server,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> i32 {
    let Some(s) = as_ref(s) else {
        return DT_E_INVALID_ARGUMENT;
    };
    match s.s.metrics() {
        Ok(text) => copy_str(&text, buf, buf_len, needed),
        Err(e) => e.code(),
    }
}

/// Status of `group` on this server into `*out`. Returns `DT_OK`,
/// `DT_E_RAFT_GROUP_NOT_FOUND`, `DT_E_INVALID_ARGUMENT`,
/// `DT_E_RUNTIME_SHUT_DOWN` or `DT_E_FORKED`. Cheap, never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_group_status(
    s: *const dt_server,
    group: u32,
    out: *mut dt_group_status,
) -> i32 {
    let Some(s) = as_ref(s) else {
        return DT_E_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    let st = match s.s.status() {
        Ok(st) => st,
        Err(e) => return e.code(),
    };
    let Some(g) = st.groups.iter().find(|g| g.group_id == group) else {
        return DT_E_RAFT_GROUP_NOT_FOUND;
    };
    let role = match g.role.as_str() {
        "follower" => DT_ROLE_FOLLOWER,
        "candidate" => DT_ROLE_CANDIDATE,
        "leader" => DT_ROLE_LEADER,
        "observer" => DT_ROLE_OBSERVER,
        "stopped" => DT_ROLE_STOPPED,
        _ => DT_ROLE_UNKNOWN,
    };
    write_out(
        out,
        dt_group_status {
            role,
            ready: u32::from(g.ready),
            leader_id: g.leader_id,
            term: g.term,
            commit_index: g.commit_index,
            applied_index: g.applied_index,
        },
    );
    DT_OK
}

/// Stops the node gracefully (accepted writes finish within `grace_ms`, logs
/// are synced and closed, ports closed). Idempotent. Returns a future.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_stop(s: *mut dt_server, grace_ms: u32) -> *mut dt_future {
    match as_ref(s) {
        Some(s) => future(s.s.stop_async(Duration::from_millis(u64::from(grace_ms)))),
        None => null_arg("server"),
    }
}

/// Releases a server handle (NULL is ignored). Does not stop the node.
#[unsafe(no_mangle)]
pub extern "C" fn dt_server_free(s: *mut dt_server) {
    free_handle(s);
}

/// Waits until the future completes or `timeout_ms` passes (negative: no
/// limit). Returns `DT_OK` once it has completed (read the outcome with
/// `dt_future_error`), `DT_E_PENDING` when the time passed first, or
/// `DT_E_INVALID_ARGUMENT`. Blocks; never call it from a callback.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_wait(f: *const dt_future, timeout_ms: i64) -> i32 {
    let Some(f) = as_ref(f) else {
        return DT_E_INVALID_ARGUMENT;
    };
    let t = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
    if f.f.wait(t) { DT_OK } else { DT_E_PENDING }
}

/// 1 when the future has completed, 0 when not (or NULL). Never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_is_ready(f: *const dt_future) -> i32 {
    as_ref(f).map(|f| i32::from(f.f.is_ready())).unwrap_or(0)
}

struct CallbackCtx {
    cb: unsafe extern "C" fn(*mut dt_future, *mut c_void),
    future: *mut dt_future,
    user_data: *mut c_void,
}

// SAFETY: the pointers are only handed back to the caller's callback; the
// header tells the caller that the callback may run on another thread, so
// `user_data` must be safe to use from there.
unsafe impl Send for CallbackCtx {}

/// Sets the function called once when the future completes — with its
/// result, with `DT_E_CANCELLED`, or with `DT_E_RUNTIME_SHUT_DOWN`. It runs
/// on an IO thread of the runtime, or, when the future has already
/// completed, on this thread before this returns, or on the thread calling
/// `dt_future_cancel`, `dt_future_free` or `dt_runtime_shutdown` when that
/// completes it. It receives this future and `user_data`; it may read the
/// result and may free the future (unless it was fired by that future's own
/// `dt_future_free`). It must not block on other futures. One callback per
/// future: returns `DT_OK`, or `DT_E_INVALID_ARGUMENT` (NULL argument or a
/// callback already set).
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_set_callback(
    f: *mut dt_future,
    cb: dt_callback,
    user_data: *mut c_void,
) -> i32 {
    let (Some(fr), Some(cb)) = (as_ref(f), cb) else {
        return DT_E_INVALID_ARGUMENT;
    };
    let ctx = CallbackCtx {
        cb,
        future: f,
        user_data,
    };
    let r = fr.f.on_complete(Box::new(move || {
        let ctx = ctx;
        // SAFETY: `cb` is the caller's function pointer; the future handle is
        // still allocated: it is freed only by `dt_future_free`, which cancels
        // (and so runs this callback) before releasing it.
        unsafe { (ctx.cb)(ctx.future, ctx.user_data) };
    }));
    match r {
        Ok(()) => DT_OK,
        Err(e) => e.code(),
    }
}

/// Cancels the call: the future completes with `DT_E_CANCELLED` (its
/// callback fires on this thread) unless it already completed. A write
/// already sent may still be applied. Returns `DT_OK` or
/// `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_cancel(f: *mut dt_future) -> i32 {
    match as_ref(f) {
        Some(f) => {
            f.f.cancel();
            DT_OK
        }
        None => DT_E_INVALID_ARGUMENT,
    }
}

/// Releases a future and its result (NULL is ignored). A pending future is
/// cancelled first (its callback fires on this thread). Pointers read from
/// it (messages, nodes) are invalid afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_free(f: *mut dt_future) {
    if let Some(fr) = as_ref(f) {
        fr.f.cancel();
    }
    free_handle(f);
}

/// The outcome: `DT_OK` on success, `DT_E_PENDING` while pending,
/// `DT_E_INVALID_ARGUMENT` for NULL, otherwise the error code.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_error(f: *const dt_future) -> i32 {
    match as_ref(f).map(|f| f.f.result()) {
        None => DT_E_INVALID_ARGUMENT,
        Some(None) => DT_E_PENDING,
        Some(Some(Ok(_))) => DT_OK,
        Some(Some(Err(e))) => e.code(),
    }
}

fn error_of(f: *const dt_future) -> Option<&'static Error> {
    // The future's result never changes once set; the reference is valid
    // until the handle is freed, which the header makes the caller respect.
    let f: &'static dt_future = as_ref(f)?;
    match f.f.result() {
        Some(Err(e)) => Some(e),
        _ => None,
    }
}

fn out_slice(bytes: &[u8], ptr: *mut *const u8, len: *mut usize) -> i32 {
    if ptr.is_null() || len.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    write_out(ptr, bytes.as_ptr());
    write_out(len, bytes.len());
    DT_OK
}

/// The error message (UTF-8, not NUL-terminated) in `*msg`/`*len`, owned by
/// the future and valid until it is freed; empty when the call succeeded or
/// is pending. Returns `DT_OK` or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_error_message(
    f: *const dt_future,
    msg: *mut *const u8,
    len: *mut usize,
) -> i32 {
    if as_ref(f).is_none() {
        return DT_E_INVALID_ARGUMENT;
    }
    out_slice(
        error_of(f).map(|e| e.message().as_bytes()).unwrap_or(b""),
        msg,
        len,
    )
}

/// 1 when the call failed and the server guarantees it was not executed (a
/// retry, also of a write, is safe); 0 otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_retryable(f: *const dt_future) -> i32 {
    error_of(f).map(|e| i32::from(e.retryable())).unwrap_or(0)
}

/// The leader's `host:port` (not NUL-terminated) after
/// `DT_E_NOT_RAFT_LEADER`, owned by the future; `*len` 0 when none. Returns
/// `DT_OK` or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_leader_hint(
    f: *const dt_future,
    hint: *mut *const u8,
    len: *mut usize,
) -> i32 {
    if as_ref(f).is_none() {
        return DT_E_INVALID_ARGUMENT;
    }
    out_slice(
        error_of(f)
            .and_then(|e| e.leader_hint())
            .map(str::as_bytes)
            .unwrap_or(b""),
        hint,
        len,
    )
}

fn reply_of(f: *const dt_future) -> Result<&'static dongting_sdk::Reply, i32> {
    let f: &'static dt_future = as_ref(f).ok_or(DT_E_INVALID_ARGUMENT)?;
    match f.f.result() {
        None => Err(DT_E_PENDING),
        Some(Err(e)) => Err(e.code()),
        Some(Ok(r)) => Ok(r),
    }
}

/// The scalar part of a successful result into `*out`. Returns `DT_OK`,
/// `DT_E_PENDING`, the call's error code, or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_reply(f: *const dt_future, out: *mut dt_reply) -> i32 {
    let r = match reply_of(f) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let v = dt_reply {
        kind: r.kind as u32,
        created: u32::from(r.created),
        index: r.index,
        deadline_ms: r.deadline_ms,
        node_count: r.nodes.len(),
        code_count: r.codes.len(),
    };
    if write_out(out, v) {
        DT_OK
    } else {
        DT_E_INVALID_ARGUMENT
    }
}

/// Node `i` (0-based, below `node_count`) of a successful result into
/// `*out`; its pointers are owned by the future. Returns `DT_OK`,
/// `DT_E_INVALID_ARGUMENT` (NULL, or `i` out of range), `DT_E_PENDING` or the
/// call's error code.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_node(f: *const dt_future, i: usize, out: *mut dt_node) -> i32 {
    let r = match reply_of(f) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let Some(n) = r.nodes.get(i) else {
        return DT_E_INVALID_ARGUMENT;
    };
    let v = dt_node {
        key: n.key.as_ptr(),
        key_len: n.key.len(),
        value: n.value.as_ptr(),
        value_len: n.value.len(),
        kind: n.kind as u32,
        create_index: n.create_index,
        create_time_ms: n.create_time_ms,
        update_index: n.update_index,
        update_time_ms: n.update_time_ms,
        ttl_deadline_ms: n.ttl_deadline_ms,
        ttl_owner: n.ttl_owner,
    };
    if write_out(out, v) {
        DT_OK
    } else {
        DT_E_INVALID_ARGUMENT
    }
}

/// Per-key code `i` (below `code_count`) of a batch result into `*out`
/// (`DT_OK` or a DtKV code). Returns `DT_OK`, `DT_E_INVALID_ARGUMENT`,
/// `DT_E_PENDING` or the call's error code.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_code(f: *const dt_future, i: usize, out: *mut i32) -> i32 {
    let r = match reply_of(f) {
        Ok(r) => r,
        Err(c) => return c,
    };
    match r.codes.get(i) {
        Some(c) if write_out(out, *c) => DT_OK,
        _ => DT_E_INVALID_ARGUMENT,
    }
}

/// Watches `count` keys (borrowed for the call) of `group`: each key covers
/// itself and every key under it, the empty key the whole tree. Events with
/// a raft index above `from_index` are delivered (0: from the serving node's
/// applied index). Blocks until a server accepts the watch, at most the
/// client's timeout; never call it on a callback thread. The watch then
/// reconnects by itself (docs/kv.md, "Watches"). Returns `DT_OK` and a new
/// handle in `*out`, `DT_E_INVALID_ARGUMENT`, `DT_E_KV_INVALID_KEY`, or the
/// registration's error (`DT_E_TIMEOUT`, `DT_E_RAFT_GROUP_NOT_FOUND`...).
#[unsafe(no_mangle)]
pub extern "C" fn dt_watch_new(
    c: *mut dt_client,
    group: u32,
    keys: *const dt_slice,
    count: usize,
    from_index: u64,
    out: *mut *mut dt_watch,
) -> i32 {
    let (Some(cl), Some(k)) = (as_ref(c), slices(keys, count)) else {
        return DT_E_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    match cl.c.watch(group, &k, from_index) {
        Ok(w) => {
            write_out(
                out,
                new_handle(dt_watch {
                    w,
                    last: std::sync::Mutex::new(None),
                }),
            );
            DT_OK
        }
        Err(e) => e.code(),
    }
}

/// Waits at most `timeout_ms` (0 to `DT_MAX_TIMEOUT_MS`; 0 takes only what
/// already arrived) for the watch's next item and writes it to `*out`.
/// Returns `DT_OK` (an item), `DT_E_PENDING` (none in time; nothing is lost),
/// `DT_E_CLOSED` (after `dt_watch_close` or the client's close),
/// `DT_E_INVALID_ARGUMENT`, `DT_E_RUNTIME_SHUT_DOWN`. Blocks the calling
/// thread; never call it on a callback thread.
#[unsafe(no_mangle)]
pub extern "C" fn dt_watch_next(
    w: *mut dt_watch,
    timeout_ms: u32,
    out: *mut dt_watch_event,
) -> i32 {
    let Some(w) = as_ref(w) else {
        return DT_E_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    let e = match w.w.next(u64::from(timeout_ms)) {
        Ok(Some(e)) => e,
        Ok(None) => return DT_E_PENDING,
        Err(e) => return e.code(),
    };
    let mut last = w.last.lock().unwrap_or_else(|p| p.into_inner());
    let e = last.insert(e);
    write_out(
        out,
        dt_watch_event {
            kind: e.kind as u32,
            node_kind: e.node_kind as u32,
            index: e.index,
            key: e.key.as_ptr(),
            key_len: e.key.len(),
            value: e.value.as_ptr(),
            value_len: e.value.len(),
            history_floor: e.history_floor,
        },
    );
    DT_OK
}

/// Unregisters the watch: a `dt_watch_next` waiting on another thread and
/// later ones return `DT_E_CLOSED`. Idempotent. Blocks until the server answered (at most the client's
/// timeout). Returns `DT_OK`, `DT_E_INVALID_ARGUMENT` or
/// `DT_E_RUNTIME_SHUT_DOWN`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_watch_close(w: *mut dt_watch) -> i32 {
    match as_ref(w) {
        Some(w) => match w.w.close() {
            Ok(()) => DT_OK,
            Err(e) => e.code(),
        },
        None => DT_E_INVALID_ARGUMENT,
    }
}

/// Releases a watch handle (NULL is ignored), unregistering it if it is
/// still open. The pointers of its last item become invalid.
#[unsafe(no_mangle)]
pub extern "C" fn dt_watch_free(w: *mut dt_watch) {
    free_handle(w);
}

/// The fencing token of a successful tryLock into `*out` (0: not acquired).
/// Returns `DT_OK`, `DT_E_PENDING`, the call's error code,
/// `DT_E_WRONG_RESULT_KIND` (not a tryLock) or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_token(f: *const dt_future, out: *mut u64) -> i32 {
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    let r = match reply_of(f) {
        Ok(r) => r,
        Err(c) => return c,
    };
    if r.kind != dongting_sdk::ReplyKind::Lock {
        return DT_E_WRONG_RESULT_KIND;
    }
    write_out(out, r.token);
    DT_OK
}

/// Whether children follow a successful listPage's last node into `*out`
/// (1: more, 0: the page ends the directory; a whole list gives 0).
/// Returns `DT_OK`, `DT_E_PENDING`, the call's error code,
/// `DT_E_WRONG_RESULT_KIND` (not a list) or `DT_E_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn dt_future_more(f: *const dt_future, out: *mut i32) -> i32 {
    if out.is_null() {
        return DT_E_INVALID_ARGUMENT;
    }
    let r = match reply_of(f) {
        Ok(r) => r,
        Err(c) => return c,
    };
    if r.kind != dongting_sdk::ReplyKind::List {
        return DT_E_WRONG_RESULT_KIND;
    }
    write_out(out, i32::from(r.more));
    DT_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use dongting_sdk::code;

    #[test]
    fn codes_match_the_sdk() {
        let pairs = [
            (DT_E_CLIENT_ERROR, code::CLIENT_ERROR),
            (DT_E_NOT_RAFT_LEADER, code::NOT_RAFT_LEADER),
            (DT_E_TIMEOUT, code::TIMEOUT),
            (DT_E_CLOSED, code::CLOSED),
            (DT_E_INVALID_ARGUMENT, code::INVALID_ARGUMENT),
            (DT_E_CANCELLED, code::CANCELLED),
            (DT_E_RUNTIME_SHUT_DOWN, code::RUNTIME_SHUT_DOWN),
            (DT_E_FORKED, code::FORKED),
            (DT_E_UNSUPPORTED_API_VERSION, code::UNSUPPORTED_API_VERSION),
            (DT_E_CONFIG_ERROR, code::CONFIG_ERROR),
            (DT_E_SERVER_START_FAILED, code::SERVER_START_FAILED),
            (DT_E_RESOURCE, code::RESOURCE),
            (DT_E_WRONG_RESULT_KIND, code::WRONG_RESULT_KIND),
            (DT_E_PENDING, code::PENDING),
            (DT_E_UNKNOWN_OUTCOME, code::UNKNOWN_OUTCOME),
            (DT_E_KV_NOT_FOUND, code::KV_NOT_FOUND),
            (DT_E_KV_CAS_MISMATCH, code::KV_CAS_MISMATCH),
            (DT_E_KV_INVALID_KEY, code::KV_INVALID_KEY),
            (DT_E_KV_INVALID_TTL, code::KV_INVALID_TTL),
            (DT_E_KV_PARENT_NOT_FOUND, code::KV_PARENT_NOT_FOUND),
            (DT_E_KV_NOT_OWNER, code::KV_NOT_OWNER),
            (DT_E_KV_TOO_MANY_KEYS, code::KV_TOO_MANY_KEYS),
        ];
        for (a, b) in pairs {
            assert_eq!(a, b);
        }
        assert_eq!(dongting_sdk::ReplyKind::Server as u32, DT_REPLY_SERVER);
        assert_eq!(dongting_sdk::ReplyKind::Lock as u32, DT_REPLY_LOCK);
        assert_eq!(dongting_sdk::NodeKind::Lock as u32, DT_NODE_LOCK);
        assert_eq!(
            dongting_sdk::WatchEventKind::Changed as u32,
            DT_WATCH_CHANGED
        );
        assert_eq!(
            dongting_sdk::WatchEventKind::Compacted as u32,
            DT_WATCH_COMPACTED
        );
    }
}
