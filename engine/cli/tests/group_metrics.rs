//! The per-group metrics of a running 3-node cluster move with the work it
//! does: proposals, lease and ReadIndex reads, replication lag, log bytes, a
//! snapshot saved on admin request, locks held and waited for, and
//! temporary nodes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_client::{KvClient, KvClientConfig};
use dongting_proto::service::ReadMode;
use dongting_server::Node;
use dongting_testkit::{leader_and_follower, run_admin, shutdown, start_three};

fn client(svc: &[SocketAddr]) -> KvClient {
    let mut cfg = KvClientConfig::new(svc.to_vec());
    cfg.timeout = Duration::from_secs(5);
    KvClient::new(cfg)
}

/// The value of the sample `name{labels}` in `text`, `None` when absent.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `node`'s metric `name{labels}` satisfies `ok`; returns it.
async fn wait_for(
    node: &Node,
    name: &str,
    labels: &str,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = node.metrics_text();
        if let Some(v) = sample(&text, name, labels)
            && ok(v)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{{labels}}}: expected {what}, got {:?}\n{text}",
            sample(&text, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_metrics_follow_writes_reads_snapshots_locks_and_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = start_three(dir.path(), "").await;
    let (l, f) = leader_and_follower(&nodes).await;
    let leader = &nodes[l];
    let g = "group=\"0\"";
    let committed = |t: &str| sample(t, "dongting_group_proposals_committed_total", g);
    let before = committed(&leader.metrics_text()).expect("committed counter served");

    let c = client(&svc);
    c.mkdir(0, "m").await.expect("mkdir");
    for i in 0..5 {
        c.put(0, &format!("m.k{i}"), b"v").await.expect("put");
    }
    wait_for(
        leader,
        "dongting_group_proposals_committed_total",
        g,
        "6 more",
        |v| v >= before + 6.0,
    )
    .await;
    assert_eq!(
        sample(
            &leader.metrics_text(),
            "dongting_group_proposals_failed_total",
            g
        ),
        Some(0.0)
    );
    wait_for(leader, "dongting_group_proposals_pending", g, "0", |v| {
        v == 0.0
    })
    .await;
    wait_for(leader, "dongting_log_bytes", g, "> 0", |v| v > 0.0).await;
    // Every follower has every entry again.
    for (i, n) in nodes.iter().enumerate() {
        if i != l {
            let peer = format!("group=\"0\",peer=\"{}\"", i + 1);
            wait_for(leader, "dongting_group_replication_lag", &peer, "0", |v| {
                v == 0.0
            })
            .await;
            let t = n.metrics_text();
            assert!(
                !t.contains("dongting_group_replication_lag{"),
                "only the leader reports lag:\n{t}"
            );
        }
    }

    // Linearizable reads on the leader: by lease while heartbeats are acked.
    let lease = "group=\"0\",kind=\"lease\"";
    let index = "group=\"0\",kind=\"read_index\"";
    let reads = |t: &str| {
        sample(t, "dongting_group_reads_total", lease).unwrap_or(0.0)
            + sample(t, "dongting_group_reads_total", index).unwrap_or(0.0)
    };
    let leader_reads = reads(&leader.metrics_text());
    for i in 0..3 {
        let key = Bytes::from(format!("m.k{i}"));
        let r = c
            .get_with(0, key, ReadMode::Linearizable)
            .await
            .expect("get");
        assert!(r.data.is_some());
    }
    let t = leader.metrics_text();
    assert!(reads(&t) >= leader_reads + 3.0, "{t}");
    assert!(
        sample(&t, "dongting_group_reads_total", lease).unwrap_or(0.0) >= 1.0,
        "{t}"
    );
    // A follower read asks the leader for a read index.
    let follower = &nodes[f];
    let on_follower = client(&svc[f..=f]);
    let before = sample(
        &follower.metrics_text(),
        "dongting_group_reads_total",
        index,
    )
    .expect("read_index counter served");
    let r = on_follower
        .get_with(0, Bytes::from_static(b"m.k0"), ReadMode::Follower)
        .await
        .expect("follower get");
    assert!(r.data.is_some());
    wait_for(
        follower,
        "dongting_group_reads_total",
        index,
        "one more",
        |v| v >= before + 1.0,
    )
    .await;

    // A temporary node, a held lock and a waiter, seen on every node.
    c.put_temp(0, "m.tmp", b"t", Duration::from_secs(60))
        .await
        .expect("put temp");
    let b = client(&svc);
    let la = c.create_lock(0, "m.lock").expect("lock a");
    let lb = b.create_lock(0, "m.lock").expect("lock b");
    assert!(la.try_lock(30_000, 0).await.expect("try a").is_some());
    let waiter = tokio::spawn(async move {
        let r = lb.try_lock(30_000, 20_000).await;
        (lb, r)
    });
    for n in &nodes {
        wait_for(n, "dongting_kv_temp_nodes", g, "1", |v| v == 1.0).await;
        wait_for(n, "dongting_kv_locks_held", g, "1", |v| v == 1.0).await;
        wait_for(n, "dongting_kv_locks_waiting", g, "1", |v| v == 1.0).await;
    }
    la.unlock().await.expect("unlock");
    let (lb, r) = waiter.await.expect("waiter");
    assert!(r.expect("b waits").is_some(), "b gets the lock");
    wait_for(leader, "dongting_kv_locks_waiting", g, "0", |v| v == 0.0).await;
    wait_for(leader, "dongting_kv_locks_held", g, "1", |v| v == 1.0).await;
    lb.unlock().await.expect("unlock b");
    wait_for(leader, "dongting_kv_locks_held", g, "0", |v| v == 0.0).await;
    c.remove(0, "m.tmp").await.expect("remove temp");
    wait_for(leader, "dongting_kv_temp_nodes", g, "0", |v| v == 0.0).await;

    // A snapshot on every node, on admin request.
    let saved = |n: &Node| {
        sample(&n.metrics_text(), "dongting_snapshots_saved_total", g).expect("saved counter")
    };
    let saved_before: Vec<f64> = nodes.iter().map(saved).collect();
    let replicate: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| n.replicate_addr().expect("replicate"))
        .collect();
    let (ok, out) =
        tokio::task::spawn_blocking(move || run_admin(common::BIN, &replicate, &["snapshot"]))
            .await
            .expect("admin");
    assert!(ok && out.contains("snapshot saved"), "{out}");
    for (n, before) in nodes.iter().zip(saved_before) {
        wait_for(n, "dongting_snapshots_saved_total", g, "one more", |v| {
            v >= before + 1.0
        })
        .await;
        let t = n.metrics_text();
        assert!(
            sample(&t, "dongting_snapshot_last_bytes", g).unwrap_or(0.0) > 0.0,
            "{t}"
        );
        assert!(
            sample(&t, "dongting_snapshot_last_duration_seconds", g).is_some_and(|v| v > 0.0),
            "{t}"
        );
        assert_eq!(sample(&t, "dongting_snapshots_failed_total", g), Some(0.0));
        assert_eq!(
            sample(&t, "dongting_snapshots_installed_total", g),
            Some(0.0)
        );
    }
    shutdown(&nodes).await;
}
