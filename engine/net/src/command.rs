//! Command numbers net itself defines. Commands 1–99 are reserved for net;
//! other components take numbers from [`FIRST_APPLICATION_COMMAND`] upward
//! (see `docs/protocol.md` for the allocation).

use crate::proto::decode_echo;
use crate::server::{Handler, Request, Responder};

/// The handshake, always the first request on a connection; served on every port.
pub const CMD_HANDSHAKE: u16 = 1;
/// Liveness check with an empty body and an empty response; served on every port.
pub const CMD_PING: u16 = 2;
/// Echo: answers with the request body (an `EchoBody` table). Served only
/// where registered with [`EchoHandler`].
pub const CMD_ECHO: u16 = 3;
/// The first command number outside net's reserved range.
pub const FIRST_APPLICATION_COMMAND: u16 = 100;

/// Answers [`CMD_ECHO`] with the verified request body, unchanged. A body that
/// is not a valid `EchoBody` gets CLIENT_ERROR and the connection is closed.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

impl Handler for EchoHandler {
    fn handle(&self, req: Request, responder: Responder) {
        match decode_echo(req.body()) {
            Ok(_) => responder.ok(req.body()),
            Err(e) => responder.reject_malformed(&e.to_string()),
        }
    }
}
