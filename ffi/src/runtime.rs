//! Runtimes and clients: creating, closing and freeing them.

use super::*;

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
