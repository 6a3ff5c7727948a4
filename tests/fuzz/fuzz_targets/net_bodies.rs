//! Every FlatBuffers body decoder of the RPC layer on arbitrary bytes: the
//! verifier must reject or the decoder must return a value, never panic.
//! Accepted bodies are re-encoded and decoded again to the same value.
#![no_main]

use dongting_net::proto;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = proto::decode_echo(data) {
        let again = proto::encode_echo(payload);
        assert_eq!(proto::decode_echo(&again).expect("re-decode"), payload);
    }
    if let Ok((message, leader)) = proto::decode_error_body(data) {
        let again = proto::encode_error_body(&message, leader.as_ref());
        assert_eq!(
            proto::decode_error_body(&again).expect("re-decode"),
            (message, leader)
        );
    }
    if let Ok(info) = proto::decode_handshake_request(data) {
        let again = proto::encode_handshake_request(&info);
        assert_eq!(
            proto::decode_handshake_request(&again).expect("re-decode"),
            info
        );
    }
    if let Ok(info) = proto::decode_handshake_response(data) {
        let again = proto::encode_handshake_response(&info);
        assert_eq!(
            proto::decode_handshake_response(&again).expect("re-decode"),
            info
        );
    }
});
