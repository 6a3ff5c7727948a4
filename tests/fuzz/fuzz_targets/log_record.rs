//! The log record decoder on arbitrary bytes: no panic; an accepted record
//! never claims more bytes than it was given, and its payload is exactly the
//! bytes after the header.
#![no_main]

use dongting_store::{RECORD_HEADER_BYTES, decode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((record, used)) = decode_record(rest) {
        assert!(used <= rest.len(), "record claims more bytes than given");
        assert_eq!(used, record.encoded_len());
        assert_eq!(&record.payload[..], &rest[RECORD_HEADER_BYTES..used]);
        rest = &rest[used..];
    }
});
