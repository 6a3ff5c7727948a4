//! The HTTP port of `dongting dev`'s nodes: health, status and metrics over
//! plain HTTP/1.1 from a raw socket, and the answers to paths and methods it
//! does not serve, and the limits that keep slow, large and too many clients
//! from holding it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `METHOD path` against `addr`: the status code and the body.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn health_status_and_metrics_of_a_dev_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addrs) = common::start_dev(common::BIN, dir.path());
    let _dev = common::Proc {
        child,
        log: Default::default(),
    };
    let urls = addrs.http;
    assert_eq!(urls.len(), 3, "three HTTP addresses printed");
    let a = urls[0].as_str();

    assert_eq!(http(a, "GET", "/livez"), (200, "ok\n".to_string()));
    // Ready once every group has a leader and an entry of its term applied.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = http(a, "GET", "/readyz");
        if code == 200 {
            assert!(body.contains("\"ready\":true"), "{body}");
            break;
        }
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains("\"ready\":false") && body.contains("why"),
            "{body}"
        );
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = http(a, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"groups\":[{")
            && body.contains("\"leader\":")
            && body.contains("\"peers\":["),
        "{body}"
    );

    // Every node knows the leader; exactly one is it.
    let mut leaders = 0;
    for u in &urls {
        let (code, m) = http(u, "GET", "/metrics");
        assert_eq!(code, 200, "{m}");
        assert!(
            m.contains("dongting_group_has_leader{group=\"0\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("dongting_group_leader_changes_total{group=\"0\"}"),
            "{m}"
        );
        assert!(m.contains("dongting_peer_connected{peer="), "{m}");
        assert!(m.contains("dongting_process_resident_memory_bytes "), "{m}");
        assert!(m.trim_end().ends_with("# EOF"), "{m}");
        if m.contains("dongting_group_is_leader{group=\"0\"} 1") {
            leaders += 1;
        }
    }
    assert_eq!(leaders, 1, "one leader among the three nodes");
    // Every metric docs/monitoring.md documents is served by some node (the
    // leader alone serves the replication lag of its followers).
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/monitoring.md"
    ))
    .expect("docs/monitoring.md");
    let m: String = urls.iter().map(|u| http(u, "GET", "/metrics").1).collect();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `dongting_"))
        .filter_map(|l| l.split(['{', '`']).next())
        .collect();
    assert!(documented.len() >= 15, "{documented:?}");
    for name in documented {
        assert!(
            m.contains(&format!("dongting_{name}")),
            "dongting_{name} is documented but served by no node:\n{m}"
        );
    }

    assert_eq!(http(a, "GET", "/nope").0, 404);
    assert_eq!(http(a, "POST", "/metrics").0, 405);
    assert_eq!(http(a, "DELETE", "/status").0, 405);
}

/// `http_request_timeout_ms` of the nodes in the hardening test.
const HEAD_TIMEOUT: Duration = Duration::from_millis(3000);

/// How a slow client behaves once connected.
#[derive(Clone, Copy)]
enum Slow {
    /// Sends an endless request head, a byte every 100 ms.
    Trickle,
    /// Sends nothing.
    Silent,
    /// Sends one whole request, reads the answer and keeps the connection
    /// open without a second request.
    Idle,
}

/// A client of `addr` that behaves as `how`. Its thread returns how long the
/// connection lived until the node closed it (capped at 30 s).
fn slow_client(addr: SocketAddr, how: Slow) -> std::thread::JoinHandle<Duration> {
    let mut s = TcpStream::connect(addr).expect("connect");
    let start = Instant::now();
    std::thread::spawn(move || {
        let head: &[u8] = match how {
            Slow::Idle => b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
            _ => b"GET /livez HTTP/1.1\r\nX-Slow: ",
        };
        if matches!(how, Slow::Idle) {
            s.write_all(head).expect("send");
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut sent = 0;
        let mut buf = [0u8; 512];
        while start.elapsed() < Duration::from_secs(30) {
            if matches!(how, Slow::Trickle) {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if s.write_all(&[byte]).is_err() {
                    break;
                }
                sent += 1;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        start.elapsed()
    })
}

/// Sends `head` (and nothing more) to `addr` and reads until the node closes
/// the connection or 10 s pass: what it answered and how long it took.
fn send_head(addr: SocketAddr, head: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A node that refuses a head early may reset the connection under a
    // write still in progress: what it answered is read below either way.
    let _ = s.write_all(head);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_and_too_many_http_clients_are_cut_off() {
    let cluster = common::Cluster::start_with_http(
        common::BIN,
        &format!("http_request_timeout_ms = {}", HEAD_TIMEOUT.as_millis()),
    );
    let c = cluster.client();
    cluster.leader(&c).await;
    let addr = cluster.http[0];
    let a = addr.to_string();
    assert_eq!(http(&a, "GET", "/livez").0, 200);

    // Slow-loris clients: some trickle a head that never ends, some say
    // nothing, some keep an idle connection after one answer. While they
    // hang, the node answers KV requests on its service port and /livez on a
    // fresh HTTP connection at once.
    let slow: Vec<_> = [Slow::Trickle, Slow::Silent, Slow::Idle]
        .into_iter()
        .cycle()
        .take(9)
        .map(|how| slow_client(addr, how))
        .collect();
    let opened = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    c.put(0, "slowloris", b"v").await.expect("put");
    let got = c.get(0, "slowloris").await.expect("get");
    assert_eq!(got.data.expect("slowloris").value.as_ref(), b"v");
    let kv = t.elapsed();
    let t = Instant::now();
    assert_eq!(http(&a, "GET", "/livez"), (200, "ok\n".to_string()));
    let livez = t.elapsed();
    assert!(
        kv < Duration::from_secs(1) && livez < Duration::from_millis(500),
        "put+get took {kv:?}, /livez {livez:?} while slow clients hung"
    );
    assert!(
        opened.elapsed() < HEAD_TIMEOUT && slow.iter().all(|h| !h.is_finished()),
        "the slow clients were still connected during those requests"
    );
    for (i, h) in slow.into_iter().enumerate() {
        let lived = tokio::task::spawn_blocking(move || h.join().expect("slow client"))
            .await
            .expect("join");
        assert!(
            lived >= HEAD_TIMEOUT - Duration::from_millis(50)
                && lived < HEAD_TIMEOUT + Duration::from_millis(1500),
            "slow client {i} was closed after {lived:?}, not about {HEAD_TIMEOUT:?}"
        );
    }

    // A head over 16 KiB is answered 431 as soon as that much arrived,
    // though it never ends.
    let mut big = b"GET /livez HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(17 * 1024, b'a');
    let (answer, took) = send_head(addr, &big);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized head answered {answer:?}"
    );
    assert!(took < HEAD_TIMEOUT / 2, "refused after {took:?}");

    // A body is refused from its announced length, unread: 413 and closed.
    for head in [
        "GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
        "GET /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let (answer, took) = send_head(addr, head.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{head:?} answered {answer:?}"
        );
        assert!(took < HEAD_TIMEOUT / 2, "{head:?} refused after {took:?}");
    }
    let (answer, _) = send_head(
        addr,
        b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "a small body is fine: {answer:?}"
    );

    // 256 open connections fill the port; one more is closed on accept.
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<TcpStream> = (0..256)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let (answer, took) = send_head(addr, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        answer.is_empty() && took < Duration::from_secs(1),
        "the connection over the cap got {answer:?} after {took:?}"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let t = Instant::now();
        let (answer, _) = send_head(
            addr,
            b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            t < deadline,
            "no answer once the held connections closed: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
