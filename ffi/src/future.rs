//! Futures: waiting, callbacks, cancelling and reading results (`dt_future_*`).

use super::*;

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

pub(crate) fn error_of(f: *const dt_future) -> Option<&'static Error> {
    // The future's result never changes once set; the reference is valid
    // until the handle is freed, which the header makes the caller respect.
    let f: &'static dt_future = as_ref(f)?;
    match f.f.result() {
        Some(Err(e)) => Some(e),
        _ => None,
    }
}

pub(crate) fn out_slice(bytes: &[u8], ptr: *mut *const u8, len: *mut usize) -> i32 {
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

pub(crate) fn reply_of(f: *const dt_future) -> Result<&'static dongting_sdk::Reply, i32> {
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
