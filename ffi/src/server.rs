//! The embedded server: `dt_server_*`.

use super::*;

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

pub(crate) fn copy_str(text: &str, buf: *mut c_char, buf_len: usize, needed: *mut usize) -> i32 {
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
