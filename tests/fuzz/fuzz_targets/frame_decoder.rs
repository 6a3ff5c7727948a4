//! The frame decoder on arbitrary bytes delivered in arbitrary pieces.
//!
//! Properties: no panic; the buffer never holds more than one frame beyond the
//! limit; every decoded frame re-encodes to exactly the bytes it came from; an
//! error ends the stream (the connection would be closed).
#![no_main]

use bytes::BytesMut;
use dongting_net::codec::{FrameDecoder, HEADER_LEN, encode_frame};
use libfuzzer_sys::fuzz_target;

/// A small limit so the fuzzer reaches the "too large" path often.
const MAX_FRAME_BYTES: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, stream)) = data.split_first() else {
        return;
    };
    let decoder = FrameDecoder::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    // Deliver the stream in pieces of 1..=256 bytes chosen by the first byte.
    let piece = usize::from(split_seed) + 1;
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let len = HEADER_LEN + frame.body.len();
                    assert!(
                        len <= MAX_FRAME_BYTES as usize,
                        "frame over the limit decoded"
                    );
                    let mut again = BytesMut::new();
                    encode_frame(&frame.header, &frame.body, &mut again).expect("re-encode");
                    assert_eq!(
                        &again[..],
                        &stream[consumed..consumed + len],
                        "round trip differs"
                    );
                    consumed += len;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= stream.len());
    }
});
