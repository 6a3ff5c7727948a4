//! What a client spends on each request's encodings: building a put's command
//! and reading its write result, building a get's request and reading its
//! answer. The server's side of each (decoding the request, encoding the
//! answer) is timed too. One thread, no I/O; 256-byte values and bench-style
//! keys, as `dongting bench` sends them.
//!
//! `cargo bench -p dongting-kv --bench codec`

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use dongting_kv::{
    Command, NodeState, NodeView, Op, Outcome, ReadRequest, ReadResponse, ReadResult, WriteResult,
};
use std::hint::black_box;

fn node(key: &Bytes, value: &Bytes) -> NodeView {
    NodeView {
        key: key.clone(),
        state: NodeState::Value,
        value: value.clone(),
        create_index: 12,
        create_time_ms: 1_764_000_000_000,
        update_index: 4_000_123,
        update_time_ms: 1_764_000_100_000,
        ttl: None,
    }
}

fn codec(c: &mut Criterion) {
    let key = Bytes::from_static(b"bench.k4711");
    let value = Bytes::from(vec![7u8; 256]);
    let cmd = Command {
        client_id: 42,
        seq: 1_000_000,
        acked_below: 998_000,
        leader_time_ms: 0,
        op: Op::Put {
            key: key.clone(),
            value: value.clone(),
        },
    };
    c.bench_function("put: encode command", |b| {
        b.iter(|| dongting_kv::with_command(black_box(&cmd), |d| d.len()))
    });
    let encoded = dongting_kv::encode_command(&cmd);
    c.bench_function("put: decode command (server)", |b| {
        b.iter(|| dongting_kv::decode_command_bytes(black_box(&encoded)).expect("decodes"))
    });
    let written = WriteResult {
        index: 4_000_124,
        outcome: Ok(Outcome::Put { created: false }),
    };
    let answer = dongting_kv::with_write_result(&written, <[u8]>::to_vec);
    c.bench_function("put: decode write result", |b| {
        b.iter(|| dongting_kv::decode_write_result(black_box(&answer)).expect("decodes"))
    });

    let req = ReadRequest::Get(key.clone());
    c.bench_function("get: encode request", |b| {
        b.iter(|| dongting_kv::with_read_request(black_box(&req), |d| d.len()))
    });
    let encoded = dongting_kv::with_read_request(&req, <[u8]>::to_vec);
    c.bench_function("get: decode request (server)", |b| {
        b.iter(|| dongting_kv::decode_read_request(black_box(&encoded)).expect("decodes"))
    });
    let read = ReadResult {
        index: 4_000_200,
        data: Ok(ReadResponse::Get(Some(node(&key, &value)))),
    };
    c.bench_function("get: encode answer (server)", |b| {
        b.iter(|| dongting_kv::with_read_result(&req, black_box(&read), |d| d.len()))
    });
    let answer = dongting_kv::with_read_result(&req, &read, <[u8]>::to_vec);
    c.bench_function("get: decode answer", |b| {
        b.iter(|| dongting_kv::decode_get_result(black_box(&answer), &key).expect("decodes"))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
