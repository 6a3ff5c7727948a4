//! Key syntax: a tree of `.`-separated segments.
//!
//! The rules follow the Java original's `KvClient.checkKey` (non-empty, no
//! leading or trailing `.`, no empty segment, no space, length limit) and add
//! what it leaves implicit: a key is UTF-8 text without whitespace or control
//! characters. The empty key names the root directory and is accepted only by
//! reads (get, list).

use crate::error::KvError;

/// The separator between key segments.
pub const SEPARATOR: u8 = b'.';

/// Checks `key` against the syntax rules and the length limit. `allow_root`
/// accepts the empty key (the root directory). Cost: one pass over the key.
pub fn validate_key(key: &[u8], max_key_bytes: usize, allow_root: bool) -> Result<(), KvError> {
    if key.is_empty() {
        return if allow_root {
            Ok(())
        } else {
            Err(KvError::InvalidKey("key is empty".into()))
        };
    }
    if key.len() > max_key_bytes {
        return Err(KvError::KeyTooLong(format!(
            "key is {} bytes, limit is {max_key_bytes}",
            key.len()
        )));
    }
    let text = std::str::from_utf8(key).map_err(|e| {
        KvError::InvalidKey(format!(
            "key is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if key[0] == SEPARATOR {
        return Err(KvError::InvalidKey(format!("key {text:?} starts with '.'")));
    }
    if key[key.len() - 1] == SEPARATOR {
        return Err(KvError::InvalidKey(format!("key {text:?} ends with '.'")));
    }
    let mut prev_sep = false;
    for (pos, ch) in text.char_indices() {
        if ch.is_whitespace() {
            return Err(KvError::InvalidKey(format!(
                "key {text:?} contains whitespace at byte {pos}"
            )));
        }
        if ch.is_control() {
            return Err(KvError::InvalidKey(format!(
                "key {text:?} contains a control character at byte {pos}"
            )));
        }
        let sep = ch == SEPARATOR as char;
        if sep && prev_sep {
            return Err(KvError::InvalidKey(format!(
                "key {text:?} has an empty segment at byte {pos}"
            )));
        }
        prev_sep = sep;
    }
    Ok(())
}

/// The parent directory of a valid key: everything before the last `.`, or the
/// empty key (the root) for a top-level key.
pub(crate) fn parent_of(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == SEPARATOR) {
        Some(i) => &key[..i],
        None => &[],
    }
}

/// A key for messages: lossy UTF-8, cut to 128 bytes so an 8 KiB key does not
/// flood an error text.
pub(crate) fn show(key: &[u8]) -> String {
    const MAX: usize = 128;
    let cut = &key[..key.len().min(MAX)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if key.len() > MAX {
        s.push_str("...");
    }
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(k: &str) -> Result<(), KvError> {
        validate_key(k.as_bytes(), 16, false)
    }

    #[test]
    fn accepts_good_keys() {
        for k in ["a", "a.b", "a.b.c", "x_1-2:3", "配置.键"] {
            assert_eq!(check(k), Ok(()), "{k}");
        }
        assert_eq!(validate_key(b"", 16, true), Ok(()));
    }

    #[test]
    fn rejects_bad_keys_with_reason() {
        let cases = [
            ("", "empty"),
            (".a", "starts with"),
            ("a.", "ends with"),
            ("a..b", "empty segment"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a\u{1}b", "control"),
            (".", "starts with"),
        ];
        for (k, why) in cases {
            match check(k) {
                Err(KvError::InvalidKey(d)) => assert!(d.contains(why), "{k:?}: {d}"),
                other => panic!("{k:?}: {other:?}"),
            }
        }
        assert!(matches!(
            validate_key(&[0xff, 0xfe], 16, false),
            Err(KvError::InvalidKey(_))
        ));
        assert!(matches!(
            check("abcdefghijklmnopq"),
            Err(KvError::KeyTooLong(_))
        ));
    }

    #[test]
    fn parent() {
        assert_eq!(parent_of(b"a"), b"");
        assert_eq!(parent_of(b"a.b"), b"a");
        assert_eq!(parent_of(b"a.b.c"), b"a.b");
    }
}
