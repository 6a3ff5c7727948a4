//! Connection limits of real `dongting server` processes: memory held by
//! partial frames, each port's connection cap, idle client connections.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use common::*;
use dongting_net::codec::{
    FrameDecoder, FrameHeader, FrameType, HEADER_LEN, MAX_HANDSHAKE_FRAME_BYTES, PROTOCOL_VERSION,
    encode_frame,
};
use dongting_net::command::CMD_HANDSHAKE;
use dongting_net::proto::{self, ClientInfo};
use dongting_net::{RpcClient, Status};
use dongting_proto::service::{CMD_STATUS, encode_status_request};
use dongting_proto::watch::{CMD_KV_UNWATCH, CMD_KV_WATCH, WatchRequest, encode_unwatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

const MIB: u64 = 1024 * 1024;

/// Raises this process's open-file soft limit to `want` when it is lower
/// (the servers it starts inherit it); fails when the hard limit is lower.
#[allow(unsafe_code)]
fn raise_open_file_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(got, 0, "getrlimit failed");
    if lim.rlim_cur >= want {
        return;
    }
    assert!(
        lim.rlim_max >= want,
        "this test needs {want} open files; the hard limit is {}",
        lim.rlim_max
    );
    lim.rlim_cur = want;
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(set, 0, "setrlimit failed");
}

/// Resident memory of process `pid` in bytes (`VmRSS`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// Writes the configuration of a one-node cluster hosting group 0, with
/// `top` lines among the top-level settings and `limits` in `[limits]`.
fn single_node(dir: &Path, top: &str, limits: &str) -> (PathBuf, SocketAddr, SocketAddr) {
    let ports = free_ports(2);
    let text = format!(
        "node_id = 1\ndata_dir = \"node1\"\nservice_port = {}\nelect_timeout_ms = 1000\n\
         heartbeat_interval_ms = 100\n{top}\nservers = [{{ id = 1, address = \"127.0.0.1:{}\" }}]\n\
         [limits]\n{limits}\n[[groups]]\nid = 0\nmembers = [1]\n",
        ports[1], ports[0]
    );
    let path = dir.join("node1.toml");
    std::fs::write(&path, text).expect("write config");
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    (path, at(ports[1]), at(ports[0]))
}

/// A client of `servers` that waits until a write succeeds (a leader serves).
async fn ready_client(servers: Vec<SocketAddr>) -> KvClient {
    let mut cfg = KvClientConfig::new(servers);
    cfg.timeout = Duration::from_secs(5);
    let c = KvClient::new(cfg);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.put(0, "ready", b"1").await.is_err() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c
}

/// The encoded handshake request frame of a raw client.
fn handshake_frame() -> BytesMut {
    let body = proto::encode_handshake_request(&ClientInfo {
        protocol_version: u32::from(PROTOCOL_VERSION),
        process_id: u64::from(std::process::id()),
        client_id: "raw-limits-test".into(),
        max_frame_bytes: 1 << 20,
    });
    let mut out = BytesMut::new();
    encode_frame(
        &FrameHeader::new(FrameType::Request, CMD_HANDSHAKE, 1),
        &body,
        &mut out,
    )
    .expect("encode");
    out
}

/// The next frame on `stream`, or `None` once it is closed.
async fn next_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Option<dongting_net::codec::Frame> {
    let decoder = FrameDecoder::new(1 << 20);
    loop {
        if let Ok(Some(frame)) = decoder.decode(buf) {
            return Some(frame);
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A raw connection that completed the handshake, or `None` when the server
/// closed it instead of answering (a refused connection).
async fn handshaken(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(&handshake_frame()).await.ok()?;
    let mut buf = BytesMut::new();
    let answer = next_frame(&mut stream, &mut buf).await?;
    assert_eq!(answer.header.status, Status::SUCCESS, "handshake answered");
    Some(stream)
}

/// Sends one request frame on a raw connection and returns the status of its
/// answer (pushes before it are skipped).
async fn call_raw(stream: &mut TcpStream, command: u16, id: u32, body: &[u8]) -> Status {
    let mut header = FrameHeader::new(FrameType::Request, command, id);
    header.timeout_ms = 5000;
    let mut out = BytesMut::new();
    encode_frame(&header, body, &mut out).expect("encode");
    stream.write_all(&out).await.expect("send");
    let mut buf = BytesMut::new();
    loop {
        let frame = next_frame(stream, &mut buf).await.expect("an answer");
        if frame.header.frame_type == FrameType::Response && frame.header.request_id == id {
            return frame.header.status;
        }
    }
}

/// Waits up to `wait` for the server to close `stream`: true when it did.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// How a partial-frame connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    /// The server closed it (before or after its bytes were sent).
    Closed,
    /// Still open when the test ended it.
    Open,
}

/// Opens a connection (handshaken or not), sends the header of a REQ frame
/// announcing `announced` bytes and `send` bytes of it in all, then keeps it
/// open until `stop`. Counts itself in `started` once its bytes are on their
/// way.
async fn partial_frame(
    addr: SocketAddr,
    handshake: bool,
    announced: u32,
    send: usize,
    started: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let stream = if handshake {
        handshaken(addr).await
    } else {
        TcpStream::connect(addr).await.ok()
    };
    let Some(mut stream) = stream else {
        started.fetch_add(1, Ordering::SeqCst);
        return Outcome::Closed;
    };
    let mut bytes = vec![0u8; send.max(HEADER_LEN)];
    let mut header = BytesMut::new();
    let mut h = FrameHeader::new(FrameType::Request, 120, 2);
    h.timeout_ms = 60_000;
    encode_frame(&h, &[], &mut header).expect("encode");
    bytes[..HEADER_LEN].copy_from_slice(&header);
    bytes[..4].copy_from_slice(&announced.to_le_bytes());
    started.fetch_add(1, Ordering::SeqCst);
    let (mut reader, mut writer) = stream.split();
    let mut sink = [0u8; 4096];
    let closed = async {
        loop {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    // The server may stop reading long before all of it is written.
    let write = async {
        let _ = writer.write_all(&bytes).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = closed => Outcome::Closed,
        _ = write => Outcome::Open,
        _ = stop.wait_for(|s| *s) => Outcome::Open,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_of_partial_frames_cost_the_node_little_memory() {
    raise_open_file_limit(4096);
    let dir = tempfile::tempdir().expect("tempdir");
    // A 32 MiB budget: the service port may reserve 24 MiB of frames.
    let (config, service, _) = single_node(dir.path(), "", "max_buffered_request_bytes = 33554432");
    let node = spawn_server(BIN, &config);
    let pid = node.child.id();
    let c = ready_client(vec![service]).await;
    for i in 0..50 {
        c.put(0, &format!("warm{i}"), &[7; 512]).await.expect("put");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss_bytes(pid);

    let (stop_tx, stop) = watch::channel(false);
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let big_frame = 5 * MIB as u32 - 1024;
    // 500 handshaken connections announce a frame of almost 5 MiB: 40 send
    // 4.5 MiB of it, the others 128 KiB. Nothing ever completes.
    for i in 0..500 {
        let send = if i < 40 { 4608 * 1024 } else { 128 * 1024 };
        let (started, stop) = (started.clone(), stop.clone());
        tasks.spawn(async move {
            (
                "handshaken",
                partial_frame(service, true, big_frame, send, started, stop).await,
            )
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < 500 {
        assert!(Instant::now() < deadline, "handshakes did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 500 connections that never handshake: half announce 5 MiB (over the
    // handshake's limit), half 4 KiB of which they send 2 KiB.
    for i in 0..500 {
        let (announced, name) = if i % 2 == 0 {
            (big_frame, "oversized first frame")
        } else {
            (MAX_HANDSHAKE_FRAME_BYTES, "partial first frame")
        };
        let (started, stop) = (started.clone(), stop.clone());
        tasks.spawn(async move {
            (
                name,
                partial_frame(service, false, announced, 2048, started, stop).await,
            )
        });
    }
    while started.load(Ordering::SeqCst) < 1000 {
        assert!(Instant::now() < deadline, "connections did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the server read what it will, then watch its memory for a while,
    // serving a normal client meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let fresh = ready_client(vec![service]).await;
    let mut peak = 0;
    for i in 0..15 {
        peak = peak.max(rss_bytes(pid));
        let key = format!("during{i}");
        fresh
            .put(0, &key, b"served")
            .await
            .expect("a normal put is served");
        let got = fresh.get(0, &key).await.expect("a normal get is served");
        assert_eq!(got.data.expect("present").value.as_ref(), b"served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send_replace(true);
    let mut outcomes: HashMap<(&str, Outcome), usize> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        *outcomes.entry(done.expect("task")).or_default() += 1;
    }
    // Closing them lets the frames that waited for the budget take their
    // turns at it, reading what their senders had left in the socket.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = rss_bytes(pid);
    let growth = peak.max(after).saturating_sub(baseline);
    eprintln!(
        "node RSS: baseline {} MiB, peak with 1000 partial-frame connections {} MiB \
         (+{} MiB), 1.5 s after they closed {} MiB; outcomes {outcomes:?}",
        baseline / MIB,
        peak / MIB,
        growth / MIB,
        after / MIB
    );
    assert!(
        growth < 100 * MIB,
        "RSS grew by {} MiB (baseline {} MiB) while or after the connections were open",
        growth / MIB,
        baseline / MIB
    );
    assert_eq!(
        outcomes.get(&("oversized first frame", Outcome::Closed)),
        Some(&250),
        "a first frame over the handshake limit closes its connection: {outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&("handshaken", Outcome::Open)),
        Some(&500),
        "waiting for the budget is no reason to close: {outcomes:?}"
    );
    fresh.close().await;
    c.close().await;
}

/// Node `addr`'s status through its replicate port.
async fn status_at(client: &RpcClient, addr: SocketAddr) -> Option<NodeStatus> {
    let body = encode_status_request(0, true);
    let r = client
        .call(addr, CMD_STATUS, &body, Duration::from_secs(2))
        .await
        .ok()?;
    NodeStatus::decode(&r.body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_clients_leave_the_replicate_port_to_peers_and_admin() {
    const CLIENTS: usize = 10_050;
    raise_open_file_limit(CLIENTS as u64 + 2048);
    let started_at = Instant::now();
    let mut cluster = Cluster::start(BIN);
    let c = cluster.client();
    cluster.leader(&c).await;
    c.close().await;
    let node1_service = cluster.service[0];
    let node1_replicate = cluster.replicate[0];

    // More idle, handshaken clients than node 1's service port admits.
    let gate = Arc::new(Semaphore::new(256));
    let mut opening = JoinSet::new();
    for _ in 0..CLIENTS {
        let gate = gate.clone();
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            handshaken(node1_service).await
        });
    }
    let mut idle = Vec::with_capacity(CLIENTS);
    let mut refused = 0;
    while let Some(done) = opening.join_next().await {
        match done.expect("task") {
            Some(stream) => idle.push(stream),
            None => refused += 1,
        }
    }
    let opened_in = started_at.elapsed();
    let node1_rss = rss_bytes(cluster.procs[0].as_ref().expect("node 1").child.id());
    assert_eq!(idle.len(), 10_000, "the service port's cap admits 10,000");
    assert_eq!(refused, CLIENTS - 10_000);

    // Admin tools still reach node 1 through its replicate port.
    let servers = node1_replicate.to_string();
    let out = Command::new(BIN)
        .args(["admin", "--servers", &servers, "status"])
        .output()
        .expect("run admin");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "admin status failed: {text}");
    assert!(text.contains("node 1 at"), "{text}");

    // Peers too: with nodes 2 and 3 gone node 1 loses its quorum; node 2,
    // restarted, must reach node 1's replicate port for group 0 to elect a
    // leader again.
    let rpc = RpcClient::new(dongting_net::ClientConfig::default());
    let term_before = status_at(&rpc, node1_replicate)
        .await
        .expect("node 1 status")
        .groups[0]
        .term;
    drop(cluster.procs[1].take());
    drop(cluster.procs[2].take());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status_at(&rpc, node1_replicate).await;
        if s.as_ref()
            .is_some_and(|s| s.groups[0].role != Some(Role::Leader))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 kept leading alone: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.procs[1] = Some(spawn_server(BIN, &cluster.config(2)));
    let node2_replicate = cluster.replicate[1];
    loop {
        let s2 = status_at(&rpc, node2_replicate).await;
        let s1 = status_at(&rpc, node1_replicate).await;
        let rejoined = s2.as_ref().is_some_and(|s| {
            let reaches_1 = s.peers.iter().any(|p| p.node_id == 1 && p.config_checked);
            let g = &s.groups[0];
            reaches_1 && g.ready && g.term > term_before && matches!(g.leader_id, 1 | 2)
        });
        let elected = s1.as_ref().is_some_and(|s| {
            let g = &s.groups[0];
            g.ready && g.term > term_before && matches!(g.leader_id, 1 | 2)
        });
        if rejoined && elected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 did not rejoin node 1: {s2:?} / {s1:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} idle clients on node 1 ({refused} refused) opened in {:?}, node 1 RSS {} MiB; \
         node 2 rejoined and group 0 elected a leader after {:?} in all",
        idle.len(),
        opened_in,
        node1_rss / MIB,
        started_at.elapsed()
    );
    rpc.close(Duration::from_millis(200)).await;
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_connection_is_closed_and_one_with_a_watch_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, service, _) = single_node(dir.path(), "client_idle_timeout_ms = 2000", "");
    let node = spawn_server(BIN, &config);
    let c = ready_client(vec![service]).await;

    let mut silent = handshaken(service).await.expect("connected");
    let mut watching = handshaken(service).await.expect("connected");
    let watch = WatchRequest {
        group_id: 0,
        watch_id: 1,
        keys: vec![bytes::Bytes::from_static(b"k")],
        from_index: 0,
    };
    assert_eq!(
        call_raw(&mut watching, CMD_KV_WATCH, 2, &watch.encode()).await,
        Status::SUCCESS
    );
    let since = Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a silent client connection is closed"
    );
    let closed_after = since.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1900),
        "{closed_after:?}"
    );
    assert!(
        !closed_within(&mut watching, Duration::from_millis(3000)).await,
        "a connection with a watch stays open"
    );
    // The watch still delivers on it.
    c.put(0, "k", b"v").await.expect("put");
    let mut buf = BytesMut::new();
    let push = next_frame(&mut watching, &mut buf).await.expect("a push");
    assert_eq!(push.header.frame_type, FrameType::Push);
    // Without its watch it is an idle connection like any other.
    assert_eq!(
        call_raw(&mut watching, CMD_KV_UNWATCH, 3, &encode_unwatch(0, 1)).await,
        Status::SUCCESS
    );
    assert!(
        closed_within(&mut watching, Duration::from_secs(5)).await,
        "closed once the watch is gone"
    );
    // The client was quiet for seconds at a time as well, but it pings:
    // the node closed the two raw connections only. (Its log arrives through
    // a pipe: wait for the second line, then make sure no third follows.)
    let closes = || {
        node.log
            .lock()
            .map(|l| l.matches("closing an idle connection").count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while closes() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = node.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(closes(), 2, "{log}");
    c.close().await;
}
