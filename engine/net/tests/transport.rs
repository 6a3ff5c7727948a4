//! End-to-end tests of the transport over loopback TCP: every test binds
//! 127.0.0.1:0 and finishes in well under a second, but those that wait for
//! idle timeouts, which take a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dongting_net::codec::{
    FLAG_CLOSING, Frame, FrameDecoder, FrameHeader, FrameType, HEADER_LEN,
    MAX_HANDSHAKE_FRAME_BYTES, PROTOCOL_VERSION, encode_frame,
};
use dongting_net::command::{CMD_ECHO, CMD_HANDSHAKE, CMD_PING, EchoHandler};
use dongting_net::proto::{self, ClientInfo, LeaderHint};
use dongting_net::{
    CallOptions, ClientConfig, CommandSet, ConnHandle, ConnHold, PortConfig, Push, Request,
    RequestKind, Responder, RpcClient, RpcError, RpcServer, ServerConfig, ServerStats, Status,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECOND: Duration = Duration::from_secs(1);
const CMD_HOLD: u16 = 200;
const CMD_COUNT: u16 = 201;
const CMD_SUBSCRIBE: u16 = 202;
const CMD_DROP: u16 = 203;
const CMD_NOT_LEADER: u16 = 204;
const CMD_HOLD_OPEN: u16 = 205;
const CMD_KEEP_OPEN_FOR: u16 = 206;
const CMD_REPLICATE_ONLY: u16 = 300;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Responders parked by CMD_HOLD, answered when the test says so.
#[derive(Clone, Default)]
struct Parked(Arc<Mutex<Vec<(Request, Responder)>>>);

impl Parked {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn answer_all(&self) {
        for (req, responder) in self.0.lock().unwrap().drain(..) {
            responder.ok(req.body());
        }
    }
}

struct Fixture {
    server: RpcServer,
    parked: Parked,
    executed: Arc<AtomicUsize>,
    subscribers: Arc<Mutex<Vec<ConnHandle>>>,
    holds: Arc<Mutex<Vec<ConnHold>>>,
}

impl Fixture {
    fn service(&self) -> SocketAddr {
        self.server.local_addr("service").unwrap()
    }
    fn replicate(&self) -> SocketAddr {
        self.server.local_addr("replicate").unwrap()
    }
}

async fn start(config: ServerConfig, service_addr: SocketAddr) -> Fixture {
    start_ports(config, service_addr, |_| {}).await
}

/// [`start`] with both ports' settings adjusted by `tune`.
async fn start_ports(
    config: ServerConfig,
    service_addr: SocketAddr,
    tune: impl Fn(&mut PortConfig),
) -> Fixture {
    let parked = Parked::default();
    let executed = Arc::new(AtomicUsize::new(0));
    let subscribers = Arc::new(Mutex::new(Vec::new()));
    let mut service = CommandSet::new();
    service.register(CMD_ECHO, EchoHandler);
    let p = parked.clone();
    service.register(CMD_HOLD, move |req: Request, responder: Responder| {
        p.0.lock().unwrap().push((req, responder));
    });
    let e = executed.clone();
    service.register(CMD_COUNT, move |req: Request, responder: Responder| {
        e.fetch_add(1, Ordering::SeqCst);
        responder.ok(req.body());
    });
    let s = subscribers.clone();
    service.register(CMD_SUBSCRIBE, move |req: Request, responder: Responder| {
        s.lock().unwrap().push(req.conn().clone());
        responder.ok(&[]);
    });
    service.register(CMD_DROP, |_req: Request, _responder: Responder| {});
    let holds = Arc::new(Mutex::new(Vec::new()));
    let h = holds.clone();
    service.register(CMD_HOLD_OPEN, move |req: Request, responder: Responder| {
        h.lock().unwrap().push(req.conn().hold());
        responder.ok(&[]);
    });
    service.register(CMD_KEEP_OPEN_FOR, |req: Request, responder: Responder| {
        let ms = u64::from(u32::from_le_bytes(req.body()[..4].try_into().unwrap()));
        req.conn().keep_open_for(Duration::from_millis(ms));
        responder.ok(&[]);
    });
    service.register(CMD_NOT_LEADER, |_req: Request, responder: Responder| {
        let hint = LeaderHint {
            node_id: 2,
            host: "127.0.0.2".into(),
            port: 9332,
        };
        responder.not_leader("not the leader of group 1", Some(&hint));
    });
    let mut replicate = CommandSet::new();
    replicate.register(CMD_REPLICATE_ONLY, |req: Request, responder: Responder| {
        responder.ok(req.body());
    });
    let mut ports = vec![
        PortConfig::new("replicate", local(), replicate),
        PortConfig::new("service", service_addr, service),
    ];
    ports.iter_mut().for_each(&tune);
    let server = RpcServer::start(config, ports).await.unwrap();
    Fixture {
        server,
        parked,
        executed,
        subscribers,
        holds,
    }
}

async fn wait_for_stats(server: &RpcServer, what: impl Fn(&ServerStats) -> bool) -> ServerStats {
    let deadline = Instant::now() + 2 * SECOND;
    loop {
        let stats = server.stats();
        if what(&stats) || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn client() -> RpcClient {
    RpcClient::new(ClientConfig {
        client_id: "test-client".into(),
        ..ClientConfig::default()
    })
}

/// Sends one CMD_HOLD call with `body` to `f`, waits until the server holds
/// it, and has it answered 50 ms later; returns the call's task.
async fn hold_one(
    f: &Fixture,
    client: &RpcClient,
    body: &'static [u8],
) -> tokio::task::JoinHandle<Result<dongting_net::Response, RpcError>> {
    let addr = f.service();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.call(addr, CMD_HOLD, body, 5 * SECOND).await })
    };
    wait_for_stats(&f.server, |_| f.parked.len() == 1).await;
    let parked = f.parked.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        parked.answer_all();
    });
    in_flight
}

async fn echo(client: &RpcClient, addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, RpcError> {
    let body = proto::encode_echo(payload);
    let response = client.call(addr, CMD_ECHO, &body, SECOND).await?;
    Ok(proto::decode_echo(&response.body).unwrap().to_vec())
}

/// A hand-driven connection for sending bytes no well-behaved client sends.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn handshaken(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        let body = proto::encode_handshake_request(&ClientInfo {
            protocol_version: u32::from(PROTOCOL_VERSION),
            process_id: 7,
            client_id: "raw".into(),
            max_frame_bytes: 1 << 20,
        });
        raw.send(
            FrameHeader::new(FrameType::Request, CMD_HANDSHAKE, 1),
            &body,
        )
        .await;
        let response = raw.recv().await.unwrap();
        assert_eq!(response.header.status, Status::SUCCESS);
        raw
    }

    async fn send(&mut self, header: FrameHeader, body: &[u8]) {
        let mut out = BytesMut::new();
        encode_frame(&header, body, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn request(&mut self, command: u16, id: u32, body: &[u8]) {
        let mut header = FrameHeader::new(FrameType::Request, command, id);
        header.timeout_ms = 1000;
        self.send(header, body).await;
    }

    /// The next frame, or `None` at end of stream.
    async fn recv(&mut self) -> Option<dongting_net::codec::Frame> {
        let decoder = FrameDecoder::new(1 << 20);
        loop {
            if let Some(frame) = decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            let n = tokio::time::timeout(2 * SECOND, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server neither answered nor closed")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Waits up to `wait` for the server to close the connection: the frames
    /// it sent before the close, or `None` while it is still open.
    async fn closed_within(&mut self, wait: Duration) -> Option<Vec<Frame>> {
        let decoder = FrameDecoder::new(1 << 20);
        let deadline = Instant::now() + wait;
        let mut frames = Vec::new();
        loop {
            while let Some(frame) = decoder.decode(&mut self.buf).unwrap() {
                frames.push(frame);
            }
            let read = self.stream.read_buf(&mut self.buf);
            match tokio::time::timeout_at(deadline.into(), read).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(frames),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Expects an error response with `status` to `request_id`, then the close.
    async fn expect_error_then_close(&mut self, request_id: u32, status: Status) -> String {
        let frame = self
            .recv()
            .await
            .expect("an error response before the close");
        assert_eq!(frame.header.frame_type, FrameType::Response);
        assert_eq!(frame.header.request_id, request_id);
        assert_eq!(frame.header.status, status);
        let (message, _) = proto::decode_error_body(&frame.body).unwrap();
        assert!(self.recv().await.is_none(), "connection must be closed");
        message
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_ping() {
    let f = start(ServerConfig::default(), local()).await;
    let client = client();
    assert_eq!(
        echo(&client, f.service(), b"hello").await.unwrap(),
        b"hello"
    );
    assert_eq!(echo(&client, f.service(), b"").await.unwrap(), b"");
    let big = vec![7u8; 1 << 20];
    assert_eq!(echo(&client, f.service(), &big).await.unwrap(), big);
    for port in [f.service(), f.replicate()] {
        let pong = client.call(port, CMD_PING, &[], SECOND).await.unwrap();
        assert!(pong.body.is_empty());
    }
    assert_eq!(f.server.stats().connections_accepted, 2);
    let conns = f.server.connections();
    let info = conns[0].client_info().unwrap();
    assert_eq!(info.client_id, "test-client");
    assert_eq!(info.process_id, u64::from(std::process::id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_and_calls() {
    let f = start(ServerConfig::default(), local()).await;
    let addr = f.service();
    let mut tasks = Vec::new();
    for c in 0..16u32 {
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut calls = Vec::new();
            for i in 0..64u32 {
                let client = client.clone();
                calls.push(tokio::spawn(async move {
                    let payload = format!("{c}-{i}").into_bytes();
                    assert_eq!(echo(&client, addr, &payload).await.unwrap(), payload);
                }));
            }
            for call in calls {
                call.await.unwrap();
            }
            client.close(SECOND).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(f.server.stats().connections_accepted, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_port_serves_only_its_commands() {
    let f = start(ServerConfig::default(), local()).await;
    let client = client();
    let ok = client
        .call(f.replicate(), CMD_REPLICATE_ONLY, b"x", SECOND)
        .await
        .unwrap();
    assert_eq!(&ok.body[..], b"x");
    let err = client
        .call(f.service(), CMD_REPLICATE_ONLY, b"x", SECOND)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Status::COMMAND_NOT_SUPPORTED);
    let err = client
        .call(f.replicate(), CMD_ECHO, &proto::encode_echo(b"x"), SECOND)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Status::COMMAND_NOT_SUPPORTED);
    let stats = wait_for_stats(&f.server, |s| s.unknown_command == 2).await;
    assert_eq!(stats.unknown_command, 2);
    // The refusal is marked CLOSING, so the very next call never races the
    // close: it opens a new connection and succeeds, every time.
    for round in 0..50 {
        let err = client
            .call(f.service(), CMD_REPLICATE_ONLY, b"x", SECOND)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Status::COMMAND_NOT_SUPPORTED, "round {round}");
        assert_eq!(
            echo(&client, f.service(), b"again").await.unwrap(),
            b"again",
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_a_close() {
    let f = start(ServerConfig::default(), local()).await;
    let addr = f.service();
    // A well-behaved client stays connected through all of it.
    let good = client();
    assert_eq!(echo(&good, addr, b"before").await.unwrap(), b"before");

    let valid = {
        let mut out = BytesMut::new();
        let mut header = FrameHeader::new(FrameType::Request, CMD_ECHO, 9);
        header.timeout_ms = 1000;
        encode_frame(&header, &proto::encode_echo(b"x"), &mut out).unwrap();
        out
    };

    // Bad magic.
    let mut raw = Raw::handshaken(addr).await;
    let mut bytes = valid.clone();
    bytes[4] = b'Z';
    raw.stream.write_all(&bytes).await.unwrap();
    let message = raw.expect_error_then_close(0, Status::PROTOCOL_ERROR).await;
    assert!(message.contains("magic"), "{message}");

    // Unsupported version.
    let mut raw = Raw::handshaken(addr).await;
    let mut bytes = valid.clone();
    bytes[6] = PROTOCOL_VERSION + 1;
    raw.stream.write_all(&bytes).await.unwrap();
    let message = raw.expect_error_then_close(0, Status::PROTOCOL_ERROR).await;
    assert!(message.contains("version"), "{message}");

    // Oversized length: answered from the header alone, body never sent.
    let mut raw = Raw::handshaken(addr).await;
    let mut bytes = valid.clone();
    bytes[0..4].copy_from_slice(&(64u32 << 20).to_le_bytes());
    raw.stream.write_all(&bytes[..HEADER_LEN]).await.unwrap();
    let message = raw.expect_error_then_close(9, Status::PROTOCOL_ERROR).await;
    assert!(message.contains("exceeds"), "{message}");

    // Body failing FlatBuffers verification.
    let mut raw = Raw::handshaken(addr).await;
    raw.request(CMD_ECHO, 10, &[0xff; 12]).await;
    raw.expect_error_then_close(10, Status::CLIENT_ERROR).await;

    // Unknown command.
    let mut raw = Raw::handshaken(addr).await;
    raw.request(4321, 11, &[]).await;
    raw.expect_error_then_close(11, Status::COMMAND_NOT_SUPPORTED)
        .await;

    // A frame type only servers send.
    let mut raw = Raw::handshaken(addr).await;
    raw.send(FrameHeader::new(FrameType::Push, CMD_ECHO, 0), &[])
        .await;
    raw.expect_error_then_close(0, Status::PROTOCOL_ERROR).await;

    // A request before the handshake.
    let mut raw = Raw::connect(addr).await;
    raw.request(CMD_ECHO, 12, &proto::encode_echo(b"x")).await;
    raw.expect_error_then_close(12, Status::CLIENT_ERROR).await;

    // A handshake body failing verification.
    let mut raw = Raw::connect(addr).await;
    raw.request(CMD_HANDSHAKE, 1, &[1, 2, 3]).await;
    raw.expect_error_then_close(1, Status::CLIENT_ERROR).await;

    // Truncated frame: half a frame, then the client goes away.
    let mut raw = Raw::handshaken(addr).await;
    raw.stream
        .write_all(&valid[..valid.len() - 3])
        .await
        .unwrap();
    raw.stream.shutdown().await.unwrap();
    assert!(raw.recv().await.is_none());

    let stats = wait_for_stats(&f.server, |s| s.truncated_frames == 1).await;
    assert_eq!(stats.bad_magic, 1);
    assert_eq!(stats.bad_version, 1);
    assert_eq!(stats.bad_length, 1);
    assert_eq!(stats.bad_body, 2);
    assert_eq!(stats.unknown_command, 1);
    assert_eq!(stats.bad_frame_type, 1);
    assert_eq!(stats.handshake_failures, 2);
    assert_eq!(stats.truncated_frames, 1);
    assert_eq!(echo(&good, addr, b"after").await.unwrap(), b"after");
    assert!(good.is_connected(addr), "other connections are unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_refused_on_both_sides() {
    let config = ServerConfig {
        max_body_bytes: 4096,
        max_frame_bytes: 8192,
        ..ServerConfig::default()
    };
    let f = start(config, local()).await;
    let client = client();
    let err = echo(&client, f.service(), &[0u8; 5000]).await.unwrap_err();
    assert_eq!(err.status(), Status::CLIENT_ERROR, "{err}");
    assert_eq!(
        echo(&client, f.service(), &[0u8; 1000])
            .await
            .unwrap()
            .len(),
        1000
    );
    // A raw client ignoring the limit gets PROTOCOL_ERROR and a close.
    let mut raw = Raw::handshaken(f.service()).await;
    raw.request(CMD_ECHO, 5, &[0u8; 5000]).await;
    raw.expect_error_then_close(5, Status::PROTOCOL_ERROR).await;
    assert_eq!(f.server.stats().bad_length, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_deadline_times_out() {
    let f = start(ServerConfig::default(), local()).await;
    let client = client();
    let started = Instant::now();
    let err = client
        .call(f.service(), CMD_HOLD, b"x", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert_eq!(err.status(), Status::TIMEOUT);
    assert!(!err.retryable());
    assert!(started.elapsed() < Duration::from_millis(600));
    // The late answer is dropped by the server and ignored by the client.
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.parked.answer_all();
    let stats = wait_for_stats(&f.server, |s| s.late_responses == 1).await;
    assert_eq!(stats.late_responses, 1);
    assert_eq!(echo(&client, f.service(), b"ok").await.unwrap(), b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_request_is_not_executed() {
    let f = start(ServerConfig::default(), local()).await;
    let mut raw = Raw::handshaken(f.service()).await;
    let mut header = FrameHeader::new(FrameType::Request, CMD_COUNT, 2);
    header.timeout_ms = 30;
    let mut frame = BytesMut::new();
    encode_frame(&header, b"payload", &mut frame).unwrap();
    // The deadline runs from the first byte: deliver the rest too late.
    raw.stream
        .write_all(&frame[..HEADER_LEN + 2])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.stream
        .write_all(&frame[HEADER_LEN + 2..])
        .await
        .unwrap();
    let stats = wait_for_stats(&f.server, |s| s.expired_requests == 1).await;
    assert_eq!(stats.expired_requests, 1);
    assert_eq!(f.executed.load(Ordering::SeqCst), 0);
    // The connection still serves timely requests.
    raw.request(CMD_COUNT, 3, b"p").await;
    let response = raw.recv().await.unwrap();
    assert_eq!(response.header.request_id, 3);
    assert_eq!(f.executed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_flow_control_refuses_over_the_limit() {
    let config = ServerConfig {
        max_in_flight_requests: 2,
        ..ServerConfig::default()
    };
    let f = start(config, local()).await;
    let mut raw = Raw::handshaken(f.service()).await;
    for id in 10..13 {
        raw.request(CMD_HOLD, id, b"h").await;
    }
    let refused = raw.recv().await.unwrap();
    assert_eq!(refused.header.request_id, 12);
    assert_eq!(refused.header.status, Status::FLOW_CONTROL);
    assert_eq!(f.parked.len(), 2);
    f.parked.answer_all();
    let mut ids = [raw.recv().await.unwrap(), raw.recv().await.unwrap()]
        .map(|r| (r.header.request_id, r.header.status));
    ids.sort_by_key(|(id, _)| *id);
    assert_eq!(ids, [(10, Status::SUCCESS), (11, Status::SUCCESS)]);
    // Permits were released: the next request runs.
    raw.request(CMD_HOLD, 13, b"h").await;
    wait_for_stats(&f.server, |_| f.parked.len() == 1).await;
    assert_eq!(f.parked.len(), 1);
    assert_eq!(f.server.stats().flow_control_rejections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_flow_control_waits_or_fails_fast() {
    let f = start(ServerConfig::default(), local()).await;
    let client = RpcClient::new(ClientConfig {
        max_in_flight_requests: 2,
        ..ClientConfig::default()
    });
    let addr = f.service();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(addr, CMD_HOLD, b"h", 5 * SECOND).await })
        })
        .collect();
    wait_for_stats(&f.server, |_| f.parked.len() == 2).await;
    assert_eq!(f.parked.len(), 2);

    let fail_fast = CallOptions {
        timeout: SECOND,
        wait_for_permit: false,
    };
    let err = client
        .call_with(addr, CMD_COUNT, b"c", fail_fast)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Status::FLOW_CONTROL);
    assert!(err.retryable());

    let started = Instant::now();
    let err = client
        .call(addr, CMD_COUNT, b"c", Duration::from_millis(80))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Status::FLOW_CONTROL);
    assert!(started.elapsed() >= Duration::from_millis(70));

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.call(addr, CMD_COUNT, b"c", 5 * SECOND).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        f.executed.load(Ordering::SeqCst),
        0,
        "nothing was sent while over the limit"
    );
    f.parked.answer_all();
    for call in held {
        call.await.unwrap().unwrap();
    }
    waiting.await.unwrap().unwrap();
    assert_eq!(f.executed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_push_reaches_the_listener() {
    let f = start(ServerConfig::default(), local()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Push>();
    let client = RpcClient::with_push_listener(
        ClientConfig::default(),
        Arc::new(move |push: Push| {
            let _ = tx.send(push);
        }),
    );
    client
        .call(f.service(), CMD_SUBSCRIBE, &[], SECOND)
        .await
        .unwrap();
    let conn = f.subscribers.lock().unwrap()[0].clone();
    assert_eq!(conn.port_name(), "service");
    for i in 0..3u8 {
        conn.push(500 + u16::from(i), &[i; 3]).unwrap();
    }
    for i in 0..3u8 {
        let push = tokio::time::timeout(SECOND, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(push.addr, f.service());
        assert_eq!(push.command, 500 + u16::from(i));
        assert_eq!(&push.body[..], &[i; 3]);
    }
    // The close notification fires when the client goes away.
    client.close(SECOND).await;
    tokio::time::timeout(SECOND, conn.closed()).await.unwrap();
    assert!(conn.is_closed());
    assert_eq!(
        conn.push(500, b"late").unwrap_err().status(),
        Status::CLOSED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_messages_are_executed_without_answer() {
    let f = start(ServerConfig::default(), local()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = client();
    let mut commands = CommandSet::new();
    let s = seen.clone();
    commands.register(CMD_COUNT, move |req: Request, responder: Responder| {
        s.lock().unwrap().push((req.kind(), req.body().clone()));
        responder.ok(b"ignored");
    });
    let server = RpcServer::start(
        ServerConfig::default(),
        vec![PortConfig::new("p", local(), commands)],
    )
    .await
    .unwrap();
    let addr = server.local_addr("p").unwrap();
    for i in 0..10u8 {
        client.one_way(addr, CMD_COUNT, &[i]).await.unwrap();
    }
    // A call after them proves they were all read (one connection, in order).
    client.call(addr, CMD_COUNT, b"last", SECOND).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 11);
    for (i, (kind, body)) in seen.iter().take(10).enumerate() {
        assert_eq!(*kind, RequestKind::OneWay);
        assert_eq!(&body[..], &[i as u8]);
    }
    assert_eq!(seen[10].0, RequestKind::Call);
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_responder_and_not_leader_errors() {
    let f = start(ServerConfig::default(), local()).await;
    let client = client();
    let err = client
        .call(f.service(), CMD_DROP, &[], SECOND)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Status::SYS_ERROR);
    assert!(!err.retryable());
    assert_eq!(f.server.stats().dropped_responders, 1);
    let err = client
        .call(f.service(), CMD_NOT_LEADER, &[], SECOND)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Status::NOT_RAFT_LEADER);
    assert!(err.retryable());
    let hint = err.leader_hint().unwrap();
    assert_eq!(
        (hint.node_id, hint.host.as_str(), hint.port),
        (2, "127.0.0.2", 9332)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_server_restart() {
    let f = start(ServerConfig::default(), local()).await;
    let addr = f.service();
    let client = RpcClient::new(ClientConfig {
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(100),
        ..ClientConfig::default()
    });
    assert_eq!(echo(&client, addr, b"one").await.unwrap(), b"one");
    f.server.shutdown(SECOND).await;
    drop(f);
    let err = echo(&client, addr, b"down").await.unwrap_err();
    assert_eq!(err.status(), Status::NETWORK_ERROR, "{err}");
    let restarted = start(ServerConfig::default(), addr).await;
    let deadline = Instant::now() + 3 * SECOND;
    loop {
        match echo(&client, addr, b"two").await {
            Ok(payload) => {
                assert_eq!(payload, b"two");
                break;
            }
            Err(e) if Instant::now() < deadline && e.status() == Status::NETWORK_ERROR => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    }
    assert_eq!(restarted.server.stats().connections_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_on_sticks_to_its_connection() {
    let f = start(ServerConfig::default(), local()).await;
    let addr = f.service();
    let client = RpcClient::new(ClientConfig {
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(100),
        ..ClientConfig::default()
    });
    assert_eq!(client.connection_id(addr), None);
    let err = client.one_way_on(addr, 1, CMD_ECHO, b"x").unwrap_err();
    assert_eq!(err.status(), Status::NETWORK_ERROR);
    assert_eq!(
        client.connection_id(addr),
        None,
        "one_way_on never connects"
    );
    echo(&client, addr, b"one").await.unwrap();
    let first = client.connection_id(addr).unwrap();
    client.one_way_on(addr, first, CMD_ECHO, b"x").unwrap();
    let err = client
        .one_way_on(addr, first + 1_000_000, CMD_ECHO, b"x")
        .unwrap_err();
    assert_eq!(err.status(), Status::NETWORK_ERROR);
    // The server goes away and comes back: the old id is dead, and the
    // connection a later call opens has a new one.
    f.server.shutdown(SECOND).await;
    drop(f);
    let deadline = Instant::now() + 3 * SECOND;
    while client.connection_id(addr).is_some() {
        assert!(
            Instant::now() < deadline,
            "the closed connection still looks live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(client.one_way_on(addr, first, CMD_ECHO, b"x").is_err());
    let _restarted = start(ServerConfig::default(), addr).await;
    while echo(&client, addr, b"two").await.is_err() {
        assert!(Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = client.connection_id(addr).unwrap();
    assert_ne!(first, second);
    assert!(client.one_way_on(addr, first, CMD_ECHO, b"x").is_err());
    client.one_way_on(addr, second, CMD_ECHO, b"x").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_work() {
    let f = start(ServerConfig::default(), local()).await;
    let client = client();
    let addr = f.service();
    let in_flight = hold_one(&f, &client, b"late").await;
    // A request arriving during shutdown is refused with STOPPING.
    let (shutdown, late) = tokio::join!(f.server.shutdown(2 * SECOND), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        client.call(addr, CMD_COUNT, b"c", SECOND).await
    });
    let () = shutdown;
    let late = late.unwrap_err();
    assert_eq!(late.status(), Status::STOPPING);
    assert!(late.retryable());
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(&response.body[..], b"late");
    assert_eq!(f.server.stats().connections_open, 0);

    // Client side: close waits for the call in flight.
    let g = start(ServerConfig::default(), local()).await;
    let addr = g.service();
    let in_flight = hold_one(&g, &client, b"x").await;
    client.close(2 * SECOND).await;
    in_flight.await.unwrap().unwrap();
    let err = echo(&client, addr, b"closed").await.unwrap_err();
    assert_eq!(err.status(), Status::CLOSED);
}

fn echo_frame(request_id: u32, payload: &[u8]) -> BytesMut {
    let mut header = FrameHeader::new(FrameType::Request, CMD_ECHO, request_id);
    header.timeout_ms = 10_000;
    let mut out = BytesMut::new();
    encode_frame(&header, &proto::encode_echo(payload), &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_larger_than_a_handshake_is_refused_from_its_header_before_the_handshake() {
    let f = start(ServerConfig::default(), local()).await;
    let mut raw = Raw::connect(f.service()).await;
    let mut out = BytesMut::new();
    encode_frame(
        &FrameHeader::new(FrameType::Request, CMD_HANDSHAKE, 1),
        &[],
        &mut out,
    )
    .unwrap();
    out[0..4].copy_from_slice(&(MAX_HANDSHAKE_FRAME_BYTES + 1).to_le_bytes());
    raw.stream.write_all(&out).await.unwrap();
    let message = raw.expect_error_then_close(1, Status::PROTOCOL_ERROR).await;
    assert!(message.contains("4096"), "{message}");
    assert_eq!(f.server.stats().bad_length, 1);
    // The same length is fine once the handshake is done.
    let mut raw = Raw::handshaken(f.service()).await;
    let frame = echo_frame(2, &[1; 8192]);
    raw.stream.write_all(&frame).await.unwrap();
    let answer = raw.recv().await.unwrap();
    assert_eq!(answer.header.status, Status::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_too_long_for_a_handshake_is_refused_before_sending() {
    let f = start(ServerConfig::default(), local()).await;
    let client = RpcClient::new(ClientConfig {
        client_id: "x".repeat(MAX_HANDSHAKE_FRAME_BYTES as usize),
        ..ClientConfig::default()
    });
    let err = echo(&client, f.service(), b"x").await.unwrap_err();
    assert!(matches!(err, RpcError::InvalidRequest(_)), "{err:?}");
    assert!(err.to_string().contains("client_id"), "{err}");
    assert_eq!(f.server.stats().handshake_failures, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_wait_for_the_buffer_budget_while_small_ones_pass() {
    let config = ServerConfig {
        max_frame_bytes: 1 << 20,
        max_body_bytes: (1 << 20) - 64,
        max_buffered_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    let f = start(config, local()).await;
    let addr = f.service();
    let payload = vec![5u8; 600 << 10];
    let frame = echo_frame(7, &payload);
    let whole = frame.len() as u64;
    let mut a = Raw::handshaken(addr).await;
    a.stream.write_all(&frame[..200 << 10]).await.unwrap();
    let stats = wait_for_stats(&f.server, |s| s.buffered_bytes == whole).await;
    assert_eq!(
        stats.buffered_bytes, whole,
        "a's frame holds its whole length"
    );
    let mut b = Raw::handshaken(addr).await;
    b.stream.write_all(&frame[..32 << 10]).await.unwrap();
    let stats = wait_for_stats(&f.server, |s| s.budget_waits == 1).await;
    assert_eq!(
        stats.budget_waits, 1,
        "b waits: the budget holds one such frame"
    );
    let good = client();
    assert_eq!(echo(&good, addr, b"small").await.unwrap(), b"small");

    a.stream.write_all(&frame[200 << 10..]).await.unwrap();
    let answer = a.recv().await.unwrap();
    assert_eq!(answer.header.status, Status::SUCCESS);
    assert_eq!(proto::decode_echo(&answer.body).unwrap(), &payload[..]);
    b.stream.write_all(&frame[32 << 10..]).await.unwrap();
    let answer = b.recv().await.unwrap();
    assert_eq!(answer.header.status, Status::SUCCESS, "b got a's share");
    assert_eq!(proto::decode_echo(&answer.body).unwrap(), &payload[..]);
    let stats = wait_for_stats(&f.server, |s| s.buffered_bytes == 0).await;
    assert_eq!(stats.buffered_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_client_that_pings_keeps_its_own() {
    let idle = Duration::from_secs(1);
    let f = start_ports(ServerConfig::default(), local(), |p| {
        p.idle_timeout = Some(idle)
    })
    .await;
    let addr = f.service();
    let client = client();
    echo(&client, addr, b"hi").await.unwrap();
    let id = client.connection_id(addr).unwrap();
    let mut raw = Raw::handshaken(addr).await;
    let started = Instant::now();
    let frames = raw
        .closed_within(5 * SECOND)
        .await
        .expect("the silent raw connection is closed");
    assert!(started.elapsed() >= idle - Duration::from_millis(50));
    let last = frames.last().expect("the reason comes before the close");
    assert_eq!(last.header.request_id, 0);
    assert_eq!(last.header.flags & FLAG_CLOSING, FLAG_CLOSING);
    let (message, _) = proto::decode_error_body(&last.body).unwrap();
    assert!(message.contains("idle"), "{message}");

    // The client sent nothing of its own all along, but pinged.
    tokio::time::sleep(2 * idle).await;
    assert_eq!(client.connection_id(addr), Some(id));
    assert_eq!(echo(&client, addr, b"still").await.unwrap(), b"still");
    assert_eq!(client.connection_id(addr), Some(id), "the same connection");
    assert_eq!(f.server.stats().idle_closes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_or_kept_connection_outlives_the_idle_timeout() {
    let f = start_ports(ServerConfig::default(), local(), |p| {
        p.idle_timeout = Some(Duration::from_millis(300))
    })
    .await;
    let addr = f.service();
    let mut held = Raw::handshaken(addr).await;
    held.request(CMD_HOLD_OPEN, 2, &[]).await;
    assert_eq!(held.recv().await.unwrap().header.status, Status::SUCCESS);
    let mut kept = Raw::handshaken(addr).await;
    kept.request(CMD_KEEP_OPEN_FOR, 2, &1500u32.to_le_bytes())
        .await;
    assert_eq!(kept.recv().await.unwrap().header.status, Status::SUCCESS);
    let started = Instant::now();

    assert!(
        kept.closed_within(Duration::from_millis(1200))
            .await
            .is_none(),
        "kept open for 1.5 s"
    );
    assert!(
        kept.closed_within(3 * SECOND).await.is_some(),
        "closed once that time and the idle timeout passed"
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(
        held.closed_within(Duration::from_millis(100))
            .await
            .is_none(),
        "held open all the while"
    );
    f.holds.lock().unwrap().clear();
    assert!(
        held.closed_within(3 * SECOND).await.is_some(),
        "closed once released"
    );
    assert_eq!(f.server.stats().idle_closes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_port_has_its_own_connection_cap() {
    let f = start_ports(ServerConfig::default(), local(), |p| p.max_connections = 3).await;
    let mut service = Vec::new();
    for _ in 0..3 {
        service.push(Raw::handshaken(f.service()).await);
    }
    let mut refused = Raw::connect(f.service()).await;
    assert!(
        refused.closed_within(2 * SECOND).await.is_some(),
        "a fourth service connection is closed on accept"
    );
    assert_eq!(f.server.stats().connections_refused, 1);
    // The replicate port does not count the service port's connections.
    let peer = client();
    let answer = peer
        .call(f.replicate(), CMD_REPLICATE_ONLY, b"r", SECOND)
        .await
        .unwrap();
    assert_eq!(&answer.body[..], b"r");
    // A closed connection makes room again.
    drop(service.pop());
    wait_for_stats(&f.server, |s| s.connections_open == 3).await;
    let mut again = Raw::handshaken(f.service()).await;
    assert!(
        again
            .closed_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    assert_eq!(f.server.stats().connections_refused, 1);
}

/// A fake server that answers the handshake with `answer` (a whole frame) and
/// keeps the connection open.
async fn fake_server(answer: BytesMut) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let decoder = FrameDecoder::new(1 << 20);
                loop {
                    if let Ok(Some(_)) = decoder.decode(&mut buf) {
                        break;
                    }
                    if matches!(stream.read_buf(&mut buf).await, Ok(0) | Err(_)) {
                        return;
                    }
                }
                let _ = stream.write_all(&answer).await;
                let _ = stream.read_buf(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_is_refused_on_both_sides_naming_both_versions() {
    let other = PROTOCOL_VERSION + 1;
    let f = start(ServerConfig::default(), local()).await;
    let addr = f.service();

    // A client announcing another version in its handshake.
    let mut raw = Raw::connect(addr).await;
    let body = proto::encode_handshake_request(&ClientInfo {
        protocol_version: u32::from(other),
        process_id: 7,
        client_id: "newer".into(),
        max_frame_bytes: 1 << 20,
    });
    raw.send(
        FrameHeader::new(FrameType::Request, CMD_HANDSHAKE, 1),
        &body,
    )
    .await;
    let message = raw.expect_error_then_close(1, Status::PROTOCOL_ERROR).await;
    assert!(
        message.contains(&format!("protocol version {other}"))
            && message.contains(&format!("speaks version {PROTOCOL_VERSION}")),
        "{message}"
    );

    // A client whose frames carry another version.
    let mut raw = Raw::connect(addr).await;
    let mut out = BytesMut::new();
    let header = FrameHeader::new(FrameType::Request, CMD_HANDSHAKE, 1);
    encode_frame(&header, &body, &mut out).unwrap();
    out[6] = other;
    raw.stream.write_all(&out).await.unwrap();
    let message = raw.expect_error_then_close(0, Status::PROTOCOL_ERROR).await;
    assert!(
        message.contains(&format!("protocol version {other}"))
            && message.contains(&format!("speaks {PROTOCOL_VERSION}")),
        "{message}"
    );
    let stats = wait_for_stats(&f.server, |s| s.handshake_failures >= 1).await;
    assert_eq!(stats.bad_version, 1);

    // A server announcing another version in its handshake answer.
    let answer = proto::encode_handshake_response(&proto::ServerInfo {
        protocol_version: u32::from(other),
        max_frame_bytes: 1 << 20,
        max_body_bytes: 1 << 19,
        max_in_flight_requests: 10,
        max_in_flight_bytes: 1 << 20,
        idle_timeout_ms: 0,
    });
    let mut frame = BytesMut::new();
    encode_frame(
        &FrameHeader::new(FrameType::Response, CMD_HANDSHAKE, 1),
        &answer,
        &mut frame,
    )
    .unwrap();
    let newer = fake_server(frame.clone()).await;
    let c = client();
    let e = echo(&c, newer, b"x").await.expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains(&format!("protocol version {other}"))
            && text.contains(&format!("speaks version {PROTOCOL_VERSION}")),
        "{text}"
    );

    // A server whose frames carry another version.
    frame[6] = other;
    let newer = fake_server(frame).await;
    let e = echo(&c, newer, b"x").await.expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains(&format!("protocol version {other}"))
            && text.contains(&format!("speaks {PROTOCOL_VERSION}")),
        "{text}"
    );
}
