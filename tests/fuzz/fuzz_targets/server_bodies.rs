//! Every body decoder of the node runtime on arbitrary bytes: raft message
//! batches, the config check, status, admin and service envelopes. Each
//! rejects or decodes, never panics; accepted raft batches re-encode to a
//! batch that decodes to the same messages.
#![no_main]

use bytes::Bytes;
use dongting_server::ping::PingInfo;
use dongting_proto::service::{
    AdminRequest, AdminResponse, decode_kv_request, decode_status_request,
};
use dongting_proto::status::NodeStatus;
use dongting_server::wire::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok((group, messages)) = decode_batch(&body) {
        let again = encode_batch(group, &messages);
        let (group2, messages2) = decode_batch(&again).expect("re-decode batch");
        assert_eq!(group, group2);
        assert_eq!(messages, messages2);
    }
    let _ = decode_kv_request(&body);
    let _ = decode_status_request(data);
    let _ = PingInfo::decode(data);
    let _ = NodeStatus::decode(data);
    let _ = AdminRequest::decode(data);
    let _ = AdminResponse::decode(data);
});
