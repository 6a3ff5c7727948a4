//! Every DtKV body decoder on arbitrary bytes: the FlatBuffers verifier rejects
//! it or the decoder returns a value; accepted commands and read requests
//! survive a re-encode unchanged.
#![no_main]

use dongting_kv::{
    decode_command, decode_lock_notification, decode_read_request, decode_read_result,
    decode_watch_event, decode_write_result, encode_command, encode_read_request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = decode_command(data) {
        let again = encode_command(&cmd);
        assert_eq!(decode_command(&again).expect("re-decode command"), cmd);
    }
    if let Ok(req) = decode_read_request(data) {
        let again = encode_read_request(&req);
        assert_eq!(decode_read_request(&again).expect("re-decode read"), req);
    }
    let _ = decode_write_result(data);
    let _ = decode_read_result(data);
    let _ = decode_watch_event(data);
    let _ = decode_lock_notification(data);
});
