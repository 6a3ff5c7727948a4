//! Distributed locks: `dt_lock_*`.

use super::*;

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
