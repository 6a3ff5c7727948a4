//! Sizing of a connection's read buffer: room for the next read, growth and shrinking.

use bytes::BytesMut;

use crate::budget::{FREE_FRAME_BYTES, Reservation};
use crate::codec::{MAX_HANDSHAKE_FRAME_BYTES, announced_len};
use crate::conn::{MIN_READ_SPACE_BYTES, READ_BUF_BYTES};

/// A read buffer whose capacity is this much larger than what it holds (after
/// a large frame) is replaced by a small one, so the large allocation is freed
/// once the frame's body is dropped.
const MAX_RETAINED_READ_BUF_BYTES: usize = 256 * 1024;

/// How many bytes the next read may add to `buf`: before the handshake, up to
/// the handshake frame limit; after it, up to [`FREE_FRAME_BYTES`], or up to
/// the end of the front frame once its share is reserved. 0 when the front
/// frame is larger than [`FREE_FRAME_BYTES`] and has no share yet.
pub(super) fn read_room(
    buf: &BytesMut,
    handshaken: bool,
    reservation: Option<&Reservation>,
) -> usize {
    if !handshaken {
        return (MAX_HANDSHAKE_FRAME_BYTES as usize).saturating_sub(buf.len());
    }
    let limit = match (announced_len(buf), reservation) {
        (_, Some(r)) => usize::try_from(r.bytes()).unwrap_or(usize::MAX),
        (Some(len), None) if len > FREE_FRAME_BYTES => return 0,
        _ => FREE_FRAME_BYTES,
    };
    limit.saturating_sub(buf.len())
}

/// Gives the next read space for part of `room`, growing the buffer by at
/// most its own size at a time: capacity follows the bytes that arrive, not
/// the length a header announces. A large frame's buffer (its length is
/// reserved) doubles up to the frame's end and never past it.
pub(super) fn make_room(buf: &mut BytesMut, room: usize) {
    let spare = buf.capacity() - buf.len();
    if spare >= room.min(MIN_READ_SPACE_BYTES) {
        return;
    }
    if room > READ_BUF_BYTES {
        let end = buf.len() + room;
        let target = (buf.capacity().saturating_mul(2))
            .max(buf.len() + READ_BUF_BYTES)
            .min(end);
        let mut grown = BytesMut::with_capacity(target);
        grown.extend_from_slice(buf);
        *buf = grown;
    } else {
        let step = room.min(buf.capacity().max(MIN_READ_SPACE_BYTES));
        buf.reserve(step);
    }
}

/// Replaces a buffer much larger than what it holds by a small copy.
pub(super) fn shrink(buf: &mut BytesMut) {
    if buf.capacity() > MAX_RETAINED_READ_BUF_BYTES && buf.len() <= READ_BUF_BYTES {
        let mut small = BytesMut::with_capacity(buf.len().max(MIN_READ_SPACE_BYTES));
        small.extend_from_slice(buf);
        *buf = small;
    }
}
