//! The request and peer metrics of `/metrics` against an in-process 3-node
//! cluster: answers counted by operation and result code (successes, a DtKV
//! error, NOT_RAFT_LEADER from a follower) and their duration histograms
//! move by exactly the requests sent; each node shows bytes and round-trip
//! samples for each of its peers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_client::{KvClient, KvClientConfig};
use dongting_kv::{Command, Op};
use dongting_net::{ClientConfig, RpcClient, Status};
use dongting_proto::service::{self as proto, ReadMode};
use dongting_server::Node;
use dongting_testkit::{kv_code, leader_and_follower, shutdown, start_three};

/// The value of the sample `series` (name and labels exactly as rendered)
/// in `text`; 0 when it is absent (a series appears at its first event).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("sample value"))
}

fn answers(text: &str, op: &str, code: &str) -> f64 {
    sample(
        text,
        &format!("dongting_kv_requests_total{{op=\"{op}\",code=\"{code}\"}}"),
    )
}

fn timed(text: &str, op: &str) -> f64 {
    sample(
        text,
        &format!("dongting_kv_request_duration_seconds_count{{op=\"{op}\"}}"),
    )
}

/// The change of every request series between two scrapes of `node`.
struct Delta {
    before: String,
    after: String,
}

impl Delta {
    fn answers(&self, op: &str, code: &str) -> f64 {
        answers(&self.after, op, code) - answers(&self.before, op, code)
    }

    fn timed(&self, op: &str) -> f64 {
        timed(&self.after, op) - timed(&self.before, op)
    }

    /// The change summed over every request counter series.
    fn all_answers(&self) -> f64 {
        let total = |t: &str| -> f64 {
            t.lines()
                .filter(|l| l.starts_with("dongting_kv_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        total(&self.after) - total(&self.before)
    }
}

async fn around<F: std::future::Future<Output = ()>>(node: &Node, f: F) -> Delta {
    let before = node.metrics_text();
    f.await;
    Delta {
        before,
        after: node.metrics_text(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_and_durations_move_by_the_requests_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = start_three(dir.path(), "").await;
    let (leader, follower) = leader_and_follower(&nodes).await;

    // Every request to the leader only: no redirect adds answers elsewhere.
    let mut cfg = KvClientConfig::new(vec![svc[leader]]);
    cfg.timeout = Duration::from_secs(5);
    let c = KvClient::new(cfg);
    let d = around(&nodes[leader], async {
        for i in 0..3 {
            c.put(0, &format!("k{i}"), b"v").await.expect("put");
        }
        for i in 0..2 {
            c.get(0, &format!("k{i}")).await.expect("get");
        }
        let e = c
            .compare_and_set(0, "k0", b"not the value", b"x")
            .await
            .expect_err("cas with a wrong expected value");
        assert_eq!(kv_code(&e), Some("CAS_MISMATCH"), "{e}");
    })
    .await;
    assert_eq!(d.answers("put", "OK"), 3.0, "{}", d.after);
    assert_eq!(d.answers("get", "OK"), 2.0, "{}", d.after);
    assert_eq!(
        d.answers("compare_and_set", "CAS_MISMATCH"),
        1.0,
        "{}",
        d.after
    );
    assert_eq!(d.all_answers(), 6.0, "{}", d.after);
    assert_eq!(d.timed("put"), 3.0, "{}", d.after);
    assert_eq!(d.timed("get"), 2.0, "{}", d.after);
    assert_eq!(d.timed("compare_and_set"), 1.0, "{}", d.after);
    // Every duration is in a bucket at or below +Inf, and took some time.
    assert_eq!(
        sample(
            &d.after,
            "dongting_kv_request_duration_seconds_bucket{le=\"+Inf\",op=\"put\"}"
        ),
        timed(&d.after, "put"),
        "{}",
        d.after
    );
    assert!(
        sample(
            &d.after,
            "dongting_kv_request_duration_seconds_sum{op=\"put\"}"
        ) > 0.0,
        "{}",
        d.after
    );

    // A write sent to a follower: NOT_RAFT_LEADER, counted there once.
    let rpc = RpcClient::new(ClientConfig::default());
    let cmd = Command::unsessioned(
        0,
        Op::Put {
            key: Bytes::from_static(b"k9"),
            value: Bytes::from_static(b"v"),
        },
    );
    let body = proto::encode_kv_request(
        0,
        ReadMode::Linearizable,
        &dongting_kv::encode_command(&cmd),
    );
    let d = around(&nodes[follower], async {
        let e = rpc
            .call(
                svc[follower],
                proto::CMD_KV_WRITE,
                &body,
                Duration::from_secs(5),
            )
            .await
            .expect_err("a follower does not take writes");
        assert_eq!(e.status(), Status::NOT_RAFT_LEADER, "{e}");
    })
    .await;
    assert_eq!(d.answers("put", "NOT_RAFT_LEADER"), 1.0, "{}", d.after);
    assert_eq!(d.all_answers(), 1.0, "{}", d.after);
    assert_eq!(d.timed("put"), 1.0, "{}", d.after);

    // A body that is no DtKV command: counted as an invalid request.
    let bad = proto::encode_kv_request(0, ReadMode::Linearizable, b"not a command");
    let d = around(&nodes[leader], async {
        let e = rpc
            .call(
                svc[leader],
                proto::CMD_KV_WRITE,
                &bad,
                Duration::from_secs(5),
            )
            .await
            .expect_err("garbage body");
        assert_eq!(e.status(), Status::CLIENT_ERROR, "{e}");
    })
    .await;
    assert_eq!(d.answers("invalid", "CLIENT_ERROR"), 1.0, "{}", d.after);
    assert_eq!(d.all_answers(), 1.0, "{}", d.after);

    rpc.close(Duration::from_secs(1)).await;
    c.close().await;
    shutdown(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_shows_bytes_and_round_trips_for_its_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, _) = start_three(dir.path(), "").await;
    let (leader, _) = leader_and_follower(&nodes).await;
    let leader_id = leader + 1;
    // Raft frames go between the leader and each follower (followers do not
    // talk to each other); round trips are timed every two seconds on every
    // checked link.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut missing = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let id = i + 1;
            let m = n.metrics_text();
            for peer in (1..=3).filter(|p| *p != id) {
                let mut series = vec!["dongting_peer_rtt_seconds_count"];
                if id == leader_id || peer == leader_id {
                    series.push("dongting_peer_sent_bytes_total");
                    series.push("dongting_peer_received_bytes_total");
                }
                for name in series {
                    let s = format!("{name}{{peer=\"{peer}\"}}");
                    if sample(&m, &s) <= 0.0 {
                        missing.push(format!("node {id}: {s}"));
                    }
                }
                let count = sample(
                    &m,
                    &format!("dongting_peer_rtt_seconds_count{{peer=\"{peer}\"}}"),
                );
                let sum = sample(
                    &m,
                    &format!("dongting_peer_rtt_seconds_sum{{peer=\"{peer}\"}}"),
                );
                let inf = sample(
                    &m,
                    &format!("dongting_peer_rtt_seconds_bucket{{le=\"+Inf\",peer=\"{peer}\"}}"),
                );
                assert_eq!(inf, count, "node {id}: {m}");
                assert!(count == 0.0 || sum > 0.0, "node {id}: {m}");
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never seen: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown(&nodes).await;
}
