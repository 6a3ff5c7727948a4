//! FlatBuffers encoding of commands, results, reads, watch events and lock
//! notifications (schema: `schema/kv.fbs`).
//!
//! Every decoder runs the FlatBuffers verifier first and turns any problem into
//! `INVALID_COMMAND` with a description; no input makes it panic. Decoders taking
//! `&Bytes` return keys and values as slices of the input (no copy); those taking
//! `&[u8]` copy them.

mod command;
mod push;
mod read;
mod result;

use bytes::{Buf, Bytes};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::error::KvError;
use crate::fb;
use crate::types::NodeState;

pub use command::{
    decode_command, decode_command_bytes, encode_command, stamp_leader_time, with_command,
};
pub use push::{
    decode_lock_notification, decode_watch_event, encode_lock_notification, encode_watch_event,
};
pub use read::{
    decode_get_result, decode_read_request, decode_read_result, encode_read_request,
    encode_read_result, with_read_request, with_read_result,
};
pub(crate) use result::{build_write_result, write_result_from_fb};
pub use result::{decode_write_result, encode_write_result, with_write_result};

/// Where decoded byte fields come from: slices of a shared buffer, or copies.
pub(crate) trait Source {
    fn take(&self, part: &[u8]) -> Bytes;
}

/// Copies each field into a buffer of its own.
struct Copied;
impl Source for Copied {
    fn take(&self, part: &[u8]) -> Bytes {
        Bytes::copy_from_slice(part)
    }
}

/// Slices each field out of the shared buffer it was decoded from.
struct Shared<'a>(&'a Bytes);
impl Source for Shared<'_> {
    fn take(&self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            Bytes::new()
        } else {
            // `part` was produced by the verifier-checked view of `self.0`, so it
            // lies inside it.
            self.0.slice_ref(part)
        }
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::InvalidCommand(format!("{what}: {e}"))
}

fn bytes_of<S: Source>(src: &S, v: Option<flatbuffers::Vector<'_, u8>>) -> Bytes {
    v.map_or_else(Bytes::new, |v| src.take(v.bytes()))
}

fn finish(b: FlatBufferBuilder<'_>) -> Bytes {
    let (buf, head) = b.collapse();
    let mut out = Bytes::from(buf);
    // `advance`, not `slice`: a slice of a `Bytes` made from a `Vec` costs an
    // allocation (the buffer becomes shared).
    out.advance(head);
    out
}

/// A builder that grew larger than this is dropped after use rather than
/// kept (one huge batch must not pin its memory).
const KEPT_BUILDER_BYTES: usize = 64 * 1024;

thread_local! {
    /// Idle builders of this thread, kept warm between encodings.
    static BUILDERS: std::cell::RefCell<Vec<FlatBufferBuilder<'static>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Builds a buffer with `build` in one of this thread's reusable builders and
/// hands the finished bytes to `done`: no allocation once the builders are
/// warm. A call nested inside `done` (a body, then the envelope around it)
/// takes a second builder.
pub fn with_built<R>(
    build: impl FnOnce(&mut FlatBufferBuilder<'static>),
    done: impl FnOnce(&[u8]) -> R,
) -> R {
    let mut b = BUILDERS
        .with(|v| v.borrow_mut().pop())
        .unwrap_or_else(|| FlatBufferBuilder::with_capacity(1024));
    b.reset();
    build(&mut b);
    let r = done(b.finished_data());
    if b.finished_data().len() <= KEPT_BUILDER_BYTES {
        BUILDERS.with(|v| v.borrow_mut().push(b));
    }
    r
}

/// [`with_built`] into a `Bytes` of exactly the finished size.
fn built(build: impl FnOnce(&mut FlatBufferBuilder<'static>)) -> Bytes {
    with_built(build, Bytes::copy_from_slice)
}

fn state_to_fb(s: NodeState) -> fb::NodeState {
    match s {
        NodeState::Absent => fb::NodeState::Absent,
        NodeState::Value => fb::NodeState::Value,
        NodeState::Dir => fb::NodeState::Dir,
        NodeState::Lock => fb::NodeState::Lock,
    }
}

pub(crate) fn state_from_fb(s: fb::NodeState) -> Result<NodeState, KvError> {
    Ok(match s {
        fb::NodeState::Absent => NodeState::Absent,
        fb::NodeState::Value => NodeState::Value,
        fb::NodeState::Dir => NodeState::Dir,
        fb::NodeState::Lock => NodeState::Lock,
        other => return Err(invalid("node state", format!("unknown value {}", other.0))),
    })
}

fn key_list<'b>(
    b: &mut FlatBufferBuilder<'b>,
    keys: &[Bytes],
) -> WIPOffset<flatbuffers::Vector<'b, flatbuffers::ForwardsUOffset<fb::KeyBytes<'b>>>> {
    let items: Vec<_> = keys
        .iter()
        .map(|k| {
            let key = Some(b.create_vector(k));
            fb::KeyBytes::create(b, &fb::KeyBytesArgs { key })
        })
        .collect();
    b.create_vector(&items)
}

fn error_parts<'b>(
    b: &mut FlatBufferBuilder<'b>,
    e: Option<&KvError>,
) -> (u16, Option<WIPOffset<&'b str>>) {
    match e {
        None => (0, None),
        Some(e) => (e.code(), Some(b.create_string(e.detail()))),
    }
}

fn error_from(code: u16, message: Option<&str>) -> KvError {
    KvError::from_code(code, message.unwrap_or_default())
}
