//! The HTTP port of `dongting dev`'s nodes: health, status and metrics over
//! plain HTTP/1.1 from a raw socket, and the answers to paths and methods it
//! does not serve.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
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
    // Every metric docs/monitoring.md documents is served.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/monitoring.md"
    ))
    .expect("docs/monitoring.md");
    let (_, m) = http(a, "GET", "/metrics");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `dongting_"))
        .filter_map(|l| l.split(['{', '`']).next())
        .collect();
    assert!(documented.len() >= 15, "{documented:?}");
    for name in documented {
        assert!(
            m.contains(&format!("dongting_{name}")),
            "dongting_{name} is documented but not served:\n{m}"
        );
    }

    assert_eq!(http(a, "GET", "/nope").0, 404);
    assert_eq!(http(a, "POST", "/metrics").0, 405);
    assert_eq!(http(a, "DELETE", "/status").0, 405);
}
