//! The table of DtKV operations every binding projects.
//!
//! [`kv_ops!`](crate::kv_ops) owns the list; the SDK's blocking forms, the
//! Python, Node and JVM glue and the per-language tests all expand it, so an
//! operation added here reaches every binding (or fails its tests until it
//! has a wrapper there). The C functions are written out in `ffi/` (cbindgen
//! does not expand macros); a test there checks each has its `dt_kv_*` pair.

/// Calls the macro `$m` with every DtKV operation that has the common shape
/// (a group, then keys, values and numbers; one [`Reply`](crate::Reply)).
///
/// Each entry is `name / name_async (arg: kind, ...);`, where `name` is the
/// blocking [`KvClient`](crate::KvClient) method and `name_async` the one
/// returning an [`OpFuture`](crate::OpFuture). Argument kinds, which each
/// binding maps to its own type and conversion:
///
/// - `group`: a raft group id (`u32`);
/// - `bytes`: a key or a value (`&[u8]`; keys must be UTF-8);
/// - `bytes_list`: several of them (`&[&[u8]]`);
/// - `u64`: a number (a page limit or a TTL in milliseconds).
///
/// Tokens after `$m,` are handed to `$m` after the list as
/// `@extra { ... }`, so one expansion can also carry a binding's other
/// methods (pyo3 allows one `#[pymethods]` block per class). Watches, locks
/// and `close` have other shapes and are not listed.
///
/// ```
/// macro_rules! names {
///     ($($name:ident / $async_name:ident ($($arg:ident : $kind:ident),*);)*) => {
///         [$(stringify!($name)),*]
///     };
/// }
/// let names = dongting_sdk::kv_ops!(names);
/// assert_eq!(names[0], "put");
/// ```
#[macro_export]
macro_rules! kv_ops {
    ($m:ident $(, $($extra:tt)*)?) => {
        $m! {
            put / put_async (group: group, key: bytes, value: bytes);
            get / get_async (group: group, key: bytes);
            remove / remove_async (group: group, key: bytes);
            mkdir / mkdir_async (group: group, key: bytes);
            list / list_async (group: group, dir: bytes);
            list_page / list_page_async (group: group, dir: bytes, start_after: bytes, limit: u64);
            batch_put / batch_put_async (group: group, keys: bytes_list, values: bytes_list);
            batch_get / batch_get_async (group: group, keys: bytes_list);
            batch_remove / batch_remove_async (group: group, keys: bytes_list);
            compare_and_set / compare_and_set_async (group: group, key: bytes, expected: bytes, new_value: bytes);
            put_temp / put_temp_async (group: group, key: bytes, value: bytes, ttl_ms: u64);
            make_temp_dir / make_temp_dir_async (group: group, key: bytes, ttl_ms: u64);
            update_ttl / update_ttl_async (group: group, key: bytes, ttl_ms: u64);
            $(@extra { $($extra)* })?
        }
    };
}

/// The Rust type of an argument kind in the SDK's signatures.
#[doc(hidden)]
#[macro_export]
macro_rules! kv_kind_type {
    (group) => {
        u32
    };
    (bytes) => {
        &[u8]
    };
    (bytes_list) => {
        &[&[u8]]
    };
    (u64) => {
        u64
    };
}

macro_rules! op_names {
    ($($name:ident / $async_name:ident ($($arg:ident : $kind:ident),*);)*) => {
        &[$(stringify!($name)),*]
    };
}

/// The names of the operations in [`kv_ops!`](crate::kv_ops), in table
/// order (the blocking method names, snake_case). No allocation.
pub fn kv_op_names() -> &'static [&'static str] {
    kv_ops!(op_names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_snake_case() {
        let names = super::kv_op_names();
        assert_eq!(names.len(), 13);
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} listed twice");
            assert!(
                n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{n} is not snake_case"
            );
        }
    }
}
