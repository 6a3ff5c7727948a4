//! The bodies net itself defines (handshake, error, echo): FlatBuffers tables
//! from `engine/net/schema/`, wrapped so callers never touch generated code.
//!
//! Every decoder runs the FlatBuffers verifier; input from the network is never
//! trusted.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::generated::echo::dongting::net as fb_echo;
use crate::generated::error::dongting::net as fb_error;
use crate::generated::handshake::dongting::net as fb_hs;

/// A body failed FlatBuffers verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} body: {reason}")]
pub struct InvalidBody {
    /// Which body was being decoded.
    pub what: &'static str,
    /// The verifier's explanation.
    pub reason: String,
}

impl InvalidBody {
    fn new(what: &'static str, err: flatbuffers::InvalidFlatbuffer) -> InvalidBody {
        InvalidBody {
            what,
            reason: err.to_string(),
        }
    }
}

/// Where the raft leader is believed to be; carried by NOT_RAFT_LEADER errors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaderHint {
    /// Raft node id of the leader.
    pub node_id: i32,
    /// Host (name or address) of the leader's service endpoint.
    pub host: String,
    /// Port of the leader's service endpoint.
    pub port: u16,
}

/// Encodes an error body (message and optional leader hint).
/// Cost: one small allocation for the builder and one for the result.
pub fn encode_error_body(message: &str, leader: Option<&LeaderHint>) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64 + message.len());
    let message = fbb.create_string(message);
    let leader = leader.map(|hint| {
        let host = fbb.create_string(&hint.host);
        fb_error::LeaderHint::create(
            &mut fbb,
            &fb_error::LeaderHintArgs {
                node_id: hint.node_id,
                host: Some(host),
                port: hint.port,
            },
        )
    });
    let body = fb_error::ErrorBody::create(
        &mut fbb,
        &fb_error::ErrorBodyArgs {
            message: Some(message),
            leader,
        },
    );
    fbb.finish_minimal(body);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Decodes and verifies an error body into its message and leader hint.
pub fn decode_error_body(body: &[u8]) -> Result<(String, Option<LeaderHint>), InvalidBody> {
    let table = flatbuffers::root::<fb_error::ErrorBody<'_>>(body)
        .map_err(|e| InvalidBody::new("error", e))?;
    let message = table.message().unwrap_or_default().to_owned();
    let leader = table.leader().map(|hint| LeaderHint {
        node_id: hint.node_id(),
        host: hint.host().unwrap_or_default().to_owned(),
        port: hint.port(),
    });
    Ok((message, leader))
}

/// Encodes an echo body carrying `payload`.
pub fn encode_echo(payload: &[u8]) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(32 + payload.len());
    let payload = fbb.create_vector(payload);
    let body = fb_echo::EchoBody::create(
        &mut fbb,
        &fb_echo::EchoBodyArgs {
            payload: Some(payload),
        },
    );
    fbb.finish_minimal(body);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Verifies an echo body and returns its payload (a borrow of `body`).
pub fn decode_echo(body: &[u8]) -> Result<&[u8], InvalidBody> {
    let table = flatbuffers::root::<fb_echo::EchoBody<'_>>(body)
        .map_err(|e| InvalidBody::new("echo", e))?;
    Ok(table.payload().map(|v| v.bytes()).unwrap_or_default())
}

/// What a client states about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientInfo {
    /// Protocol version the client speaks.
    pub protocol_version: u32,
    /// Operating-system process id of the client.
    pub process_id: u64,
    /// Free-form client identity.
    pub client_id: String,
    /// Largest frame the client accepts from the server.
    pub max_frame_bytes: u32,
}

/// The server's limits as announced in the handshake response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    /// Protocol version the server speaks.
    pub protocol_version: u32,
    /// Largest frame, header included, the server accepts.
    pub max_frame_bytes: u32,
    /// Largest body the server accepts.
    pub max_body_bytes: u32,
    /// Requests the server accepts in flight per connection.
    pub max_in_flight_requests: u32,
    /// Request body bytes the server accepts in flight per connection.
    pub max_in_flight_bytes: u64,
    /// Milliseconds without a frame from the client after which the server
    /// closes the connection; 0 means never. The client pings before that.
    pub idle_timeout_ms: u32,
}

/// Encodes the handshake request body a client sends first.
pub fn encode_handshake_request(info: &ClientInfo) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64 + info.client_id.len());
    let client_id = fbb.create_string(&info.client_id);
    let body = fb_hs::HandshakeRequest::create(
        &mut fbb,
        &fb_hs::HandshakeRequestArgs {
            protocol_version: info.protocol_version,
            client_process_id: info.process_id,
            client_id: Some(client_id),
            max_frame_bytes: info.max_frame_bytes,
        },
    );
    fbb.finish_minimal(body);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Decodes and verifies a handshake request body.
pub fn decode_handshake_request(body: &[u8]) -> Result<ClientInfo, InvalidBody> {
    let table = flatbuffers::root::<fb_hs::HandshakeRequest<'_>>(body)
        .map_err(|e| InvalidBody::new("handshake request", e))?;
    Ok(ClientInfo {
        protocol_version: table.protocol_version(),
        process_id: table.client_process_id(),
        client_id: table.client_id().unwrap_or_default().to_owned(),
        max_frame_bytes: table.max_frame_bytes(),
    })
}

/// Encodes the handshake response body a server answers with.
pub fn encode_handshake_response(info: &ServerInfo) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64);
    let body = fb_hs::HandshakeResponse::create(
        &mut fbb,
        &fb_hs::HandshakeResponseArgs {
            protocol_version: info.protocol_version,
            max_frame_bytes: info.max_frame_bytes,
            max_body_bytes: info.max_body_bytes,
            max_in_flight_requests: info.max_in_flight_requests,
            max_in_flight_bytes: info.max_in_flight_bytes,
            idle_timeout_ms: info.idle_timeout_ms,
        },
    );
    fbb.finish_minimal(body);
    Bytes::copy_from_slice(fbb.finished_data())
}

/// Decodes and verifies a handshake response body.
pub fn decode_handshake_response(body: &[u8]) -> Result<ServerInfo, InvalidBody> {
    let table = flatbuffers::root::<fb_hs::HandshakeResponse<'_>>(body)
        .map_err(|e| InvalidBody::new("handshake response", e))?;
    Ok(ServerInfo {
        protocol_version: table.protocol_version(),
        max_frame_bytes: table.max_frame_bytes(),
        max_body_bytes: table.max_body_bytes(),
        max_in_flight_requests: table.max_in_flight_requests(),
        max_in_flight_bytes: table.max_in_flight_bytes(),
        idle_timeout_ms: table.idle_timeout_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn error_body_round_trip() {
        let hint = LeaderHint {
            node_id: 3,
            host: "10.0.0.3".to_owned(),
            port: 9332,
        };
        let body = encode_error_body("not leader", Some(&hint));
        assert_eq!(
            decode_error_body(&body).unwrap(),
            ("not leader".to_owned(), Some(hint))
        );
        let body = encode_error_body("", None);
        assert_eq!(decode_error_body(&body).unwrap(), (String::new(), None));
    }

    #[test]
    fn handshake_round_trip() {
        let client = ClientInfo {
            protocol_version: 1,
            process_id: 4242,
            client_id: "app-1".to_owned(),
            max_frame_bytes: 1 << 20,
        };
        assert_eq!(
            decode_handshake_request(&encode_handshake_request(&client)).unwrap(),
            client
        );
        let server = ServerInfo {
            protocol_version: 1,
            max_frame_bytes: 5 << 20,
            max_body_bytes: 4 << 20,
            max_in_flight_requests: 1000,
            max_in_flight_bytes: 1 << 30,
            idle_timeout_ms: 600_000,
        };
        assert_eq!(
            decode_handshake_response(&encode_handshake_response(&server)).unwrap(),
            server
        );
    }

    #[test]
    fn a_handshake_with_a_4000_byte_client_id_fits_the_pre_handshake_limit() {
        use crate::codec::{HEADER_LEN, MAX_HANDSHAKE_FRAME_BYTES};
        let info = |client_id: String| ClientInfo {
            protocol_version: 1,
            process_id: u64::MAX,
            client_id,
            max_frame_bytes: u32::MAX,
        };
        let frame = |id: String| HEADER_LEN + encode_handshake_request(&info(id)).len();
        assert!(frame("x".repeat(4000)) <= MAX_HANDSHAKE_FRAME_BYTES as usize);
        assert!(frame("kv-client-ffffffffffffffff".into()) < 128);
    }

    #[test]
    fn garbage_fails_verification() {
        assert!(decode_echo(&[1, 2, 3]).is_err());
        assert!(decode_error_body(&[0xff; 16]).is_err());
        assert!(decode_handshake_request(&[]).is_err());
    }

    proptest! {
        #[test]
        fn echo_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let body = encode_echo(&payload);
            prop_assert_eq!(decode_echo(&body).unwrap(), &payload[..]);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_echo(&bytes);
            let _ = decode_error_body(&bytes);
            let _ = decode_handshake_request(&bytes);
            let _ = decode_handshake_response(&bytes);
        }
    }
}
