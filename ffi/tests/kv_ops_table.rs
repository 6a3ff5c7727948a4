//! Every operation of the SDK's table (`dongting_sdk::kv_ops!`) has its C
//! function `dt_kv_<name>` returning a `dt_future *` in the committed header.
//! cbindgen does not expand macros, so those functions are written out in
//! `src/lib.rs`; this test fails when one is missing.

const HEADER: &str = include_str!("../include/dongting.h");

#[test]
fn every_table_operation_has_its_c_function() {
    let missing: Vec<String> = dongting_sdk::kv_op_names()
        .iter()
        .map(|name| format!("dt_future *dt_kv_{name}(dt_client *c, uint32_t group,"))
        .filter(|decl| !HEADER.contains(decl.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "ffi/include/dongting.h lacks: {missing:#?}"
    );
}
