//! Deterministic entry payloads shared by the store's tests and its crash
//! writer, so a checker can tell what each entry must hold.

use bytes::Bytes;

/// The payload of entry `index` in `term` with `len` bytes: a xorshift stream
/// seeded by both, the same on every run.
pub fn payload(index: u64, term: u64, len: usize) -> Bytes {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term.rotate_left(32) ^ 1;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    Bytes::from(v)
}
