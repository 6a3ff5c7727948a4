//! A connection's reader: reading frames within the buffer budget, the idle
//! timeout and malformed frames.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tracing::{debug, info, warn};

use crate::budget::Reservation;
use crate::codec::{FrameDecoder, FrameError, MAX_HANDSHAKE_FRAME_BYTES, announced_len};
use crate::status::Status;

use super::connection::ServerConn;
use super::dispatch::dispatch;
use super::read_buf::{make_room, read_room, shrink};
use super::stats::bump;

/// What woke a connection's reader.
enum Wake {
    /// A read finished.
    Read(std::io::Result<usize>),
    /// The frame at the front of the buffer got its share of the budget.
    Reserved(Reservation),
    /// The idle timer fired.
    IdleCheck,
}

/// Reads frames and dispatches them until the connection must close.
///
/// Memory: before the handshake the buffer holds at most
/// [`MAX_HANDSHAKE_FRAME_BYTES`]; after it at most [`FREE_FRAME_BYTES`](crate::budget::FREE_FRAME_BYTES), or one
/// larger frame once that frame's whole length is reserved in the server's
/// buffer budget (it stops reading while it waits for the share). The buffer
/// grows only as bytes arrive and shrinks back after large frames.
pub(super) async fn read_loop(conn: &Arc<ServerConn>, mut reader: OwnedReadHalf) {
    let server = &conn.server;
    let config = &server.config;
    let handshake_decoder = FrameDecoder::new(MAX_HANDSHAKE_FRAME_BYTES);
    let decoder = FrameDecoder::new(config.max_frame_bytes);
    let mut buf = BytesMut::with_capacity(MAX_HANDSHAKE_FRAME_BYTES as usize);
    // The budget share of the incomplete frame at the front of `buf`.
    let mut reservation: Option<Reservation> = None;
    let mut waiting_counted = false;
    // Arrival time of the first byte of the frame that is still incomplete.
    let mut partial_since: Option<Instant> = None;
    // Arrival of the last complete frame: the idle timeout counts from it.
    let mut last_frame = Instant::now();
    let idle = conn.port.idle_timeout;
    let handshake_timer = tokio::time::sleep(config.handshake_timeout);
    tokio::pin!(handshake_timer);
    let idle_timer = tokio::time::sleep(idle.unwrap_or(config.handshake_timeout));
    tokio::pin!(idle_timer);
    loop {
        if conn.close_requested.load(Ordering::SeqCst) {
            return;
        }
        let handshaken = conn.client_info.get().is_some();
        let room = read_room(&buf, handshaken, reservation.as_ref());
        let need = if room == 0 {
            announced_len(&buf).unwrap_or(0) as u64
        } else {
            make_room(&mut buf, room);
            0
        };
        if room == 0 && !waiting_counted {
            let port = &conn.port;
            reservation = server
                .budget
                .try_reserve(port.index, port.max_buffered_bytes, need);
            if reservation.is_some() {
                continue;
            }
            waiting_counted = true;
            bump(&server.counters.budget_waits);
            debug!(
                conn = conn.id,
                bytes = need,
                "no room in the buffer budget; reading paused"
            );
        }
        let mut window = (&mut buf).limit(room);
        let wake = tokio::select! {
            biased;
            _ = conn.close_notify.notified() => return,
            _ = &mut handshake_timer, if !handshaken => {
                bump(&server.counters.handshake_failures);
                warn!(conn = conn.id, peer = %conn.peer, "no handshake in time; closing");
                return;
            }
            read = reader.read_buf(&mut window), if room > 0 => Wake::Read(read),
            r = server.budget.reserve(conn.port.index, conn.port.max_buffered_bytes, need), if room == 0 => {
                Wake::Reserved(r)
            }
            _ = &mut idle_timer, if handshaken && idle.is_some() => Wake::IdleCheck,
        };
        let read = match wake {
            Wake::Read(read) => read,
            Wake::Reserved(r) => {
                reservation = Some(r);
                waiting_counted = false;
                continue;
            }
            Wake::IdleCheck => {
                let idle = idle.unwrap_or(config.handshake_timeout);
                match conn.idle_at(last_frame, idle, Instant::now()) {
                    Some(at) => {
                        idle_timer.as_mut().reset(at.into());
                        continue;
                    }
                    None => {
                        close_idle(conn, idle);
                        return;
                    }
                }
            }
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    bump(&server.counters.truncated_frames);
                    warn!(conn = conn.id, peer = %conn.peer, bytes = buf.len(), "connection ended inside a frame");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                debug!(conn = conn.id, error = %e, "read failed");
                return;
            }
        }
        let now = Instant::now();
        let mut frame_start = partial_since.take().unwrap_or(now);
        let mut decoded_any = false;
        loop {
            let decoder = if conn.client_info.get().is_some() {
                &decoder
            } else {
                &handshake_decoder
            };
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    decoded_any = true;
                    // The first frame is the one a share was reserved for.
                    reservation = None;
                    if dispatch(conn, frame, frame_start, now).is_err() {
                        return;
                    }
                    frame_start = now;
                }
                Ok(None) => break,
                Err(e) => {
                    reject_frame(conn, &e);
                    return;
                }
            }
        }
        if decoded_any {
            last_frame = now;
        }
        if !buf.is_empty() {
            partial_since = Some(if decoded_any { now } else { frame_start });
        }
        shrink(&mut buf);
    }
}

/// Closes a connection its port found idle, telling the client why.
fn close_idle(conn: &ServerConn, idle: Duration) {
    bump(&conn.server.counters.idle_closes);
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    info!(conn = conn.id, peer = %conn.peer, port = %conn.port.name, idle_ms, "closing an idle connection");
    conn.send_closing_error(
        0,
        0,
        Status::CLIENT_ERROR,
        &format!("no frame for {idle_ms} ms: the idle connection is closed"),
    );
}

fn reject_frame(conn: &ServerConn, err: &FrameError) {
    let counters = &conn.server.counters;
    match err {
        FrameError::BadMagic { .. } => bump(&counters.bad_magic),
        FrameError::UnsupportedVersion { .. } => bump(&counters.bad_version),
        FrameError::UnknownFrameType { .. } => bump(&counters.bad_frame_type),
        FrameError::FrameTooShort { .. } | FrameError::FrameTooLarge { .. } => {
            bump(&counters.bad_length)
        }
    }
    warn!(conn = conn.id, peer = %conn.peer, error = %err, "malformed frame; closing connection");
    conn.send_closing_error(
        0,
        err.request_id().unwrap_or(0),
        Status::PROTOCOL_ERROR,
        &err.to_string(),
    );
}
