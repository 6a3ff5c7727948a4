//! KvClient against an in-process 3-node cluster: redirects from a follower,
//! status-based leader discovery, every operation with its raft index,
//! follower and stale reads, and backpressure.

use std::time::{Duration, Instant};

use dongting_client::{ClientError, Consistency, KvClient, KvClientConfig};
use dongting_kv::{NodeState, Outcome};
use dongting_testkit::{leader_and_follower, start_three};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_redirects_reads_and_backpressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = start_three(dir.path(), "").await;
    let (leader, follower) = leader_and_follower(&nodes).await;

    // Only a follower's address: the NOT_RAFT_LEADER hint leads to the leader.
    let mut cfg = KvClientConfig::new(vec![svc[follower]]);
    cfg.timeout = Duration::from_secs(5);
    let c = KvClient::new(cfg);
    let w = c.mkdir(0, "d").await.expect("mkdir");
    assert_eq!(w.outcome, Outcome::Mkdir { created: true });
    let w1 = c.put(0, "d.a", b"1").await.expect("put");
    assert!(w1.index > w.index);
    let b = c
        .batch_put(0, &[("d.b", b"2".as_slice()), ("d.c", b"3".as_slice())])
        .await
        .expect("batch put");
    assert!(matches!(b.outcome, Outcome::Batch(ref r) if r.iter().all(Result::is_ok)));
    let r = c
        .batch_get(0, &["d.a", "d.b", "d.zz"])
        .await
        .expect("batch get");
    assert!(r.index >= b.index);
    assert!(matches!(&r.data[2], Ok(None)));
    let cas = c.compare_and_set(0, "d.a", b"1", b"9").await.expect("cas");
    assert_eq!(cas.outcome, Outcome::Done);
    let e = c
        .compare_and_set(0, "d.a", b"1", b"8")
        .await
        .expect_err("cas mismatch");
    assert!(matches!(e, ClientError::Kv { .. }), "{e}");
    let l = c.list(0, "d").await.expect("list");
    let keys: Vec<_> = l.data.iter().map(|n| n.key.clone()).collect();
    assert_eq!(keys, vec!["d.a", "d.b", "d.c"]);
    let rm = c
        .batch_remove(0, &["d.b", "d.c"])
        .await
        .expect("batch remove");
    assert!(rm.index > cas.index);
    c.remove(0, "d.a").await.expect("remove");
    assert!(c.list(0, "d").await.expect("list").data.is_empty());

    // Follower and stale reads are served by the follower itself.
    c.put(0, "d.f", b"x").await.expect("put");
    let key = bytes::Bytes::from_static(b"d.f");
    let fr = c
        .get_with(0, key.clone(), Consistency::Follower)
        .await
        .expect("follower read");
    assert_eq!(fr.data.expect("d.f").value.as_ref(), b"x");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sr = c
            .get_with(0, key.clone(), Consistency::Stale)
            .await
            .expect("stale read");
        if sr.data.is_some_and(|n| n.state == NodeState::Value) {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Temporary nodes expire: the leader proposes their removal.
    c.put_temp(0, "d.tmp", b"t", Duration::from_millis(300))
        .await
        .expect("put temp");
    assert!(c.get(0, "d.tmp").await.expect("get").data.is_some());
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.get(0, "d.tmp").await.expect("get").data.is_some() {
        assert!(Instant::now() < deadline, "temporary node never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Leader discovery by status when several servers are known; many calls at
    // once through a small in-flight limit all complete.
    let mut cfg = KvClientConfig::new(svc.clone());
    cfg.max_in_flight = 8;
    let c2 = KvClient::new(cfg);
    assert_eq!(c2.find_leader(0).await, Some(svc[leader]));
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let c2 = c2.clone();
            tokio::spawn(async move { c2.put(0, &format!("d.p{i}"), b"v").await })
        })
        .collect();
    for t in calls {
        t.await.expect("join").expect("put under backpressure");
    }
    assert_eq!(c2.list(0, "d").await.expect("list").data.len(), 201);
    c2.close().await;
    c.close().await;

    for n in &nodes {
        n.shutdown(Duration::from_secs(2)).await;
    }
}

/// A directory too large for one answer lists completely: `list` walks its
/// pages, `list_page` stops at the limit or the byte cap and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = start_three(dir.path(), "").await;
    leader_and_follower(&nodes).await;
    let mut cfg = KvClientConfig::new(svc);
    cfg.timeout = Duration::from_secs(10);
    let c = KvClient::new(cfg);
    c.mkdir(0, "big").await.expect("mkdir");
    const N: usize = 25_000;
    let keys: Vec<String> = (0..N).map(|i| format!("big.k{i:06}")).collect();
    for chunk in keys.chunks(10_000) {
        let entries: Vec<(&str, &[u8])> = chunk
            .iter()
            .map(|k| (k.as_str(), b"v".as_slice()))
            .collect();
        c.batch_put(0, &entries).await.expect("batch put");
    }
    let all = c.list(0, "big").await.expect("list");
    let listed: Vec<String> = all
        .data
        .iter()
        .map(|n| String::from_utf8(n.key.to_vec()).expect("utf8"))
        .collect();
    assert_eq!(listed, keys, "every child once, in key order");

    // Explicit pages: the default size, a small one, from the middle, the end.
    let p = c.list_page(0, "big", "", 0).await.expect("page");
    assert_eq!((p.data.nodes.len(), p.data.more), (1_000, true));
    let p = c.list_page(0, "big", "big.k012344", 3).await.expect("page");
    let got: Vec<_> = p.data.nodes.iter().map(|n| n.key.clone()).collect();
    assert_eq!(got, ["big.k012345", "big.k012346", "big.k012347"]);
    assert!(p.data.more);
    assert_eq!(
        p.data.next_after().map(|k| k.as_ref()),
        Some(b"big.k012347".as_slice())
    );
    let p = c
        .list_page(0, "big", "big.k024998", 10)
        .await
        .expect("last page");
    assert_eq!((p.data.nodes.len(), p.data.more), (1, false));

    // Bad arguments are refused before sending, errors of the directory as for get.
    let e = c.list_page(0, "big", "", 10_001).await.expect_err("limit");
    assert_eq!(e.code(), dongting_client::INVALID_ARGUMENT, "{e}");
    assert!(e.to_string().contains("10001"), "{e}");
    let e = c
        .list_page(0, "nope", "", 10)
        .await
        .expect_err("missing dir");
    assert!(e.to_string().contains("NOT_FOUND"), "{e}");

    // Large values: a page stops at the byte cap, the whole listing still works.
    c.mkdir(0, "fat").await.expect("mkdir");
    let value = vec![b'x'; 1024 * 1024];
    for i in 0..8 {
        c.put(0, &format!("fat.{i}"), &value)
            .await
            .expect("put 1 MiB");
    }
    let p = c.list_page(0, "fat", "", 100).await.expect("fat page");
    assert!(
        p.data.more && p.data.nodes.len() < 8,
        "{} children",
        p.data.nodes.len()
    );
    assert_eq!(c.list(0, "fat").await.expect("fat list").data.len(), 8);
    c.close().await;
    for n in &nodes {
        n.shutdown(Duration::from_secs(2)).await;
    }
}

/// The status a node answers reflects its state when it answers: after a
/// write is acknowledged at index i, the leader's status shows commit and
/// applied at or above i, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_current_after_an_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = start_three(dir.path(), "").await;
    let (leader, _) = leader_and_follower(&nodes).await;
    let c = KvClient::new(KvClientConfig::new(svc.clone()));
    for i in 0..100 {
        let w = c.put(0, &format!("s{i}"), b"v").await.expect("put");
        let st = c.server_status(svc[leader]).await.expect("status");
        let g = &st.groups[0];
        assert!(
            g.commit_index >= w.index && g.applied_index >= w.index,
            "write {i} acknowledged at {} but status says commit={} applied={}",
            w.index,
            g.commit_index,
            g.applied_index
        );
    }
    c.close().await;
    for n in &nodes {
        n.shutdown(Duration::from_secs(2)).await;
    }
}
