//! A connection's reader: responses to waiting calls, pushes to the listener.

use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tracing::{debug, warn};

use crate::codec::{FLAG_CLOSING, Frame, FrameDecoder, FrameType};
use crate::conn::{MIN_READ_SPACE_BYTES, READ_BUF_BYTES, lock};
use crate::error::RpcError;

use super::conn::{ClientConn, remote_error};
use super::{Push, PushListener};

/// Hands each response in `ready` to its waiting call (a missing id is a call
/// that already timed out). The lock is held for the lookups only.
pub(super) fn complete(conn: &ClientConn, ready: &mut Vec<Frame>) {
    if ready.is_empty() {
        return;
    }
    let mut completions = Vec::with_capacity(ready.len());
    {
        let mut pending = lock(&conn.pending);
        for frame in ready.drain(..) {
            if let Some(waiter) = pending.remove(&frame.header.request_id) {
                completions.push((waiter.tx, frame));
            }
        }
    }
    for (tx, frame) in completions {
        let _ = tx.send(Ok(frame));
    }
}

/// Reads responses and pushes until the connection fails; returns why.
pub(super) async fn read_loop(
    conn: &ClientConn,
    mut reader: OwnedReadHalf,
    mut buf: BytesMut,
    decoder: FrameDecoder,
    listener: Option<&PushListener>,
) -> RpcError {
    let lost = |reason: String| RpcError::Network {
        addr: conn.addr,
        reason,
        sent: true,
    };
    let mut ready: Vec<Frame> = Vec::with_capacity(64);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => match frame.header.frame_type {
                    FrameType::Response if frame.header.request_id == 0 => {
                        let error = remote_error(&frame);
                        warn!(peer = %conn.addr, error = %error, "server closed the connection");
                        // Answers that arrived before the error still count.
                        complete(conn, &mut ready);
                        return error;
                    }
                    FrameType::Response => {
                        if frame.header.flags & FLAG_CLOSING != 0 {
                            // The server closes after this frame: stop sending
                            // here before the caller sees its answer, so its
                            // next call opens a new connection.
                            conn.closed.store(true, Ordering::Release);
                            conn.writer.close();
                        }
                        ready.push(frame);
                    }
                    FrameType::Push => match listener {
                        Some(listener) => listener(Push {
                            addr: conn.addr,
                            command: frame.header.command,
                            body: frame.body,
                        }),
                        None => {
                            debug!(peer = %conn.addr, command = frame.header.command, "push dropped: no listener")
                        }
                    },
                    FrameType::Request | FrameType::OneWay => {
                        warn!(peer = %conn.addr, "server sent a client-only frame type; closing");
                        return RpcError::Protocol("unexpected frame type from the server".into());
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %conn.addr, error = %e, "malformed frame from server; closing");
                    return RpcError::Protocol(e.to_string());
                }
            }
        }
        complete(conn, &mut ready);
        if buf.capacity() - buf.len() < MIN_READ_SPACE_BYTES {
            buf.reserve(READ_BUF_BYTES);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => return lost("server closed the connection".into()),
            Ok(0) => return lost("server closed the connection inside a frame".into()),
            Ok(_) => {}
            Err(e) => return lost(format!("read failed: {e}")),
        }
    }
}
