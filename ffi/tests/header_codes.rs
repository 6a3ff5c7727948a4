//! `include/dongting.h` defines a `DT_E_` constant for every code of the SDK's
//! table (`dongting_sdk::codes()`), with the same number, and no other, so the
//! C header cannot drift from the Rust table; the C test checks each of them
//! against `dt_error_name`.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CStr;

use dongting_sdk::codes;

/// Defines that are not error codes.
const NOT_CODES: &[&str] = &["DT_E_KV_BASE"];

fn header_codes() -> BTreeMap<String, i32> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/dongting.h");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut defines = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some("#define"), Some(name), Some(value)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !name.starts_with("DT_E_") || NOT_CODES.contains(&name) {
            continue;
        }
        let value = value
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a plain number: {value}"));
        assert!(
            defines.insert(name.to_string(), value).is_none(),
            "{name} defined twice"
        );
    }
    defines
}

#[test]
fn every_code_has_a_define_with_its_number() {
    let defines = header_codes();
    for c in codes() {
        let name = format!("DT_E_{}", c.constant_name());
        assert_eq!(
            defines.get(&name),
            Some(&c.code),
            "{name} in dongting.h ({c:?})"
        );
    }
}

#[test]
fn every_define_is_a_code_of_the_table() {
    for (name, value) in header_codes() {
        let known = codes()
            .iter()
            .any(|c| format!("DT_E_{}", c.constant_name()) == name && c.code == value);
        assert!(
            known,
            "dongting.h defines {name} {value}, which the SDK table lacks"
        );
    }
}

#[test]
fn dt_error_name_names_every_code() {
    for c in codes() {
        // SAFETY: dt_error_name returns a static NUL-terminated string.
        let name = unsafe { CStr::from_ptr(dongting::dt_error_name(c.code)) };
        assert_eq!(name.to_str(), Ok(c.name));
    }
}

#[test]
fn the_c_test_round_trips_every_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/test_dongting.c");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for c in codes() {
        let row = format!("{{DT_E_{}, \"{}\"}},", c.constant_name(), c.name);
        assert!(text.contains(&row), "{path} lacks `{row}` in ERROR_CODES");
    }
}
