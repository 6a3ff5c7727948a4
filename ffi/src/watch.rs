//! Watches: `dt_watch_*`.

use super::*;

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
