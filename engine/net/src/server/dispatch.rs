//! Dispatch of complete frames: the handshake, pings, deadlines, flow control and
//! the call to a port's handler.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::codec::{Frame, FrameHeader, FrameType, HEADER_LEN, PROTOCOL_VERSION};
use crate::command::{CMD_HANDSHAKE, CMD_PING};
use crate::proto::{ServerInfo, decode_handshake_request, encode_handshake_response};
use crate::status::Status;

use super::connection::{ConnHandle, ServerConn};
use super::request::{Request, Responder};
use super::stats::bump;

/// Marker: the connection must close.
pub(super) struct Close;

/// `now` is when the bytes of this read arrived: every frame of one read is
/// judged against the same clock reading.
pub(super) fn dispatch(
    conn: &Arc<ServerConn>,
    frame: Frame,
    frame_start: Instant,
    now: Instant,
) -> Result<(), Close> {
    let header = frame.header;
    let counters = &conn.server.counters;
    let config = &conn.server.config;
    let one_way = match header.frame_type {
        FrameType::Request => false,
        FrameType::OneWay => true,
        FrameType::Response | FrameType::Push => {
            bump(&counters.bad_frame_type);
            warn!(conn = conn.id, peer = %conn.peer, frame_type = ?header.frame_type, "client sent a server-only frame type; closing");
            conn.send_closing_error(
                0,
                0,
                Status::PROTOCOL_ERROR,
                "unexpected frame type from a client",
            );
            return Err(Close);
        }
    };
    if frame.body.len() > config.max_body_bytes as usize {
        bump(&counters.bad_length);
        warn!(conn = conn.id, peer = %conn.peer, len = frame.body.len(), "body over the limit; closing");
        if !one_way {
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::PROTOCOL_ERROR,
                &format!(
                    "body of {} bytes exceeds the limit of {}",
                    frame.body.len(),
                    config.max_body_bytes
                ),
            );
        }
        return Err(Close);
    }
    if conn.client_info.get().is_none() {
        return handshake(conn, &frame, one_way);
    }
    let deadline = (header.timeout_ms > 0)
        .then(|| frame_start + Duration::from_millis(u64::from(header.timeout_ms)));
    if deadline.is_some_and(|d| now >= d) {
        bump(&counters.expired_requests);
        debug!(
            conn = conn.id,
            command = header.command,
            request_id = header.request_id,
            "request expired before execution; dropped"
        );
        return Ok(());
    }
    match header.command {
        CMD_PING => {
            if !one_way {
                conn.send(
                    &FrameHeader::new(FrameType::Response, CMD_PING, header.request_id),
                    &[],
                );
            }
            return Ok(());
        }
        CMD_HANDSHAKE => {
            bump(&counters.handshake_failures);
            warn!(conn = conn.id, peer = %conn.peer, "second handshake; closing");
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::PROTOCOL_ERROR,
                "handshake already done",
            );
            return Err(Close);
        }
        _ => {}
    }
    let Some(handler) = conn.port.commands.handlers.get(&header.command) else {
        bump(&counters.unknown_command);
        warn!(conn = conn.id, peer = %conn.peer, port = %conn.port.name, command = header.command, "command not supported on this port");
        if !one_way {
            let message = format!(
                "command {} is not supported on port {}",
                header.command, conn.port.name
            );
            let status = Status::COMMAND_NOT_SUPPORTED;
            if config.close_on_unknown_command {
                conn.send_closing_error(header.command, header.request_id, status, &message);
            } else {
                conn.send_error(header.command, header.request_id, status, &message);
            }
        }
        return if config.close_on_unknown_command {
            Err(Close)
        } else {
            Ok(())
        };
    };
    if conn.server.stopping.load(Ordering::Relaxed) {
        bump(&counters.stopping_rejections);
        if !one_way {
            conn.send_error(
                header.command,
                header.request_id,
                Status::STOPPING,
                "server is stopping",
            );
        }
        return Ok(());
    }
    // Only this task increments, so check-then-add cannot overshoot.
    let body_len = frame.body.len() as u32;
    let requests = conn.in_flight_requests.load(Ordering::Acquire);
    let bytes = conn.in_flight_bytes.load(Ordering::Acquire);
    if requests >= config.max_in_flight_requests
        || bytes + u64::from(body_len) > config.max_in_flight_bytes
    {
        bump(&counters.flow_control_rejections);
        debug!(conn = conn.id, requests, bytes, "flow control");
        if !one_way {
            conn.send_error(
                header.command,
                header.request_id,
                Status::FLOW_CONTROL,
                "too many requests in flight on this connection",
            );
        }
        return Ok(());
    }
    conn.in_flight_requests.fetch_add(1, Ordering::AcqRel);
    conn.in_flight_bytes
        .fetch_add(u64::from(body_len), Ordering::AcqRel);
    let responder = Responder {
        conn: Some(conn.clone()),
        command: header.command,
        request_id: header.request_id,
        body_len,
        one_way,
        deadline,
    };
    let request = Request {
        header,
        body: frame.body,
        conn: ConnHandle(conn.clone()),
        deadline,
        arrived: frame_start,
    };
    handler.handle(request, responder);
    Ok(())
}

pub(super) fn handshake(conn: &Arc<ServerConn>, frame: &Frame, one_way: bool) -> Result<(), Close> {
    let header = frame.header;
    let counters = &conn.server.counters;
    let config = &conn.server.config;
    if header.command != CMD_HANDSHAKE || one_way {
        bump(&counters.handshake_failures);
        warn!(conn = conn.id, peer = %conn.peer, command = header.command, "request before handshake; closing");
        if !one_way {
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::CLIENT_ERROR,
                "the first request must be the handshake",
            );
        }
        return Err(Close);
    }
    let info = match decode_handshake_request(&frame.body) {
        Ok(info) => info,
        Err(e) => {
            bump(&counters.bad_body);
            bump(&counters.handshake_failures);
            warn!(conn = conn.id, peer = %conn.peer, error = %e, "bad handshake body; closing");
            conn.send_closing_error(
                header.command,
                header.request_id,
                Status::CLIENT_ERROR,
                &e.to_string(),
            );
            return Err(Close);
        }
    };
    if info.protocol_version != u32::from(PROTOCOL_VERSION) {
        bump(&counters.handshake_failures);
        warn!(conn = conn.id, peer = %conn.peer, client_id = %info.client_id, theirs = info.protocol_version, ours = PROTOCOL_VERSION, "client speaks another protocol version; closing");
        conn.send_closing_error(
            header.command,
            header.request_id,
            Status::PROTOCOL_ERROR,
            &format!(
                "unsupported protocol version {}; this server speaks version {PROTOCOL_VERSION}",
                info.protocol_version
            ),
        );
        return Err(Close);
    }
    if (info.max_frame_bytes as usize) < HEADER_LEN + 1024 {
        bump(&counters.handshake_failures);
        conn.send_closing_error(
            header.command,
            header.request_id,
            Status::CLIENT_ERROR,
            "max_frame_bytes below 1024 plus the header",
        );
        return Err(Close);
    }
    info!(conn = conn.id, peer = %conn.peer, port = %conn.port.name, client_id = %info.client_id, client_pid = info.process_id, "handshake");
    let _ = conn.client_info.set(info);
    let body = encode_handshake_response(&ServerInfo {
        protocol_version: u32::from(PROTOCOL_VERSION),
        max_frame_bytes: config.max_frame_bytes,
        max_body_bytes: config.max_body_bytes,
        max_in_flight_requests: config.max_in_flight_requests,
        max_in_flight_bytes: config.max_in_flight_bytes,
        idle_timeout_ms: conn.port.idle_timeout.map_or(0, |d| {
            u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
        }),
    });
    conn.send(
        &FrameHeader::new(FrameType::Response, CMD_HANDSHAKE, header.request_id),
        &body,
    );
    Ok(())
}
