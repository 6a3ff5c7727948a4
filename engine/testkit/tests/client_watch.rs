//! Watch streams against an in-process 3-node cluster: heartbeats advance a
//! quiet stream's position, a root watch sees the whole tree, close.

use std::time::{Duration, Instant};

use dongting_client::{ClientError, KvClient, KvClientConfig, WatchItem};
use dongting_testkit::start_three;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_advance_a_quiet_watch_and_the_root_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = start_three(dir.path(), "watch_heartbeat_ms = 200").await;
    let mut cfg = KvClientConfig::new(svc.clone());
    cfg.timeout = Duration::from_secs(5);
    let c = KvClient::new(cfg);
    let start = c.put(0, "a", b"1").await.expect("put").index;

    let mut quiet = c.watch(0, &[b"q"], start).await.expect("watch q");
    let mut root = c.watch(0, &[b""], start).await.expect("watch root");
    let mut last = start;
    for i in 0..5 {
        last = c
            .put(0, "b", i.to_string().as_bytes())
            .await
            .expect("put")
            .index;
    }
    // The root watch gets every put; the quiet one nothing, but its position
    // moves past them with the heartbeats.
    for i in 0..5 {
        let item = tokio::time::timeout(Duration::from_secs(5), root.next())
            .await
            .expect("in time")
            .expect("item");
        let WatchItem::Event(e) = item else {
            panic!("unexpected {item:?}");
        };
        assert_eq!(
            (&e.key[..], &e.value[..]),
            (&b"b"[..], i.to_string().as_bytes())
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while quiet.last_index() < last {
        assert!(
            Instant::now() < deadline,
            "heartbeats did not advance the quiet watch: {} < {last}",
            quiet.last_index()
        );
        let r = tokio::time::timeout(Duration::from_millis(300), quiet.next()).await;
        assert!(r.is_err(), "the quiet watch yielded {r:?}");
    }
    quiet.close().await;
    assert_eq!(quiet.next().await, Err(ClientError::Closed));
    root.close().await;
    c.close().await;
    for n in &nodes {
        n.shutdown(Duration::from_secs(1)).await;
    }
}
