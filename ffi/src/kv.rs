//! The DtKV operations: each `dt_kv_*` function starts one and returns its future.

use super::*;

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
