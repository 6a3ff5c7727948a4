//! `libdongting`: the C ABI over `dongting-sdk`, a mechanical `extern "C"`
//! projection of the facade. `include/dongting.h` is generated from this crate
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

// Argument helpers shared by the function modules below.
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

// The header lists the functions in this order (cbindgen follows the modules).
mod runtime;

mod kv;

mod lock;

mod server;

mod future;

mod watch;

pub use future::*;
pub use kv::*;
pub use lock::*;
pub use runtime::*;
pub use server::*;
pub use watch::*;

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
