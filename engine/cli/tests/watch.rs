//! Watches against `dongting server` processes: a watcher on a key and a
//! directory sees every committed change exactly once and in order while the
//! node serving it is killed with SIGKILL (twice), and a watch resumed from
//! before a restarted node's history gets the compacted notice. Also
//! `dongting kv watch` printing events.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use dongting_client::{WatchItem, WatchStream};
use dongting_kv::NodeState;

/// Starts three nodes whose idle watches get a heartbeat every 500 ms.
fn start_cluster() -> Cluster {
    Cluster::start_with(BIN, "watch_heartbeat_ms = 500")
}

/// The node id whose service address is `addr`.
fn node_of(cluster: &Cluster, addr: SocketAddr) -> usize {
    cluster
        .service
        .iter()
        .position(|a| *a == addr)
        .expect("a cluster node")
        + 1
}

/// Waits until node `id` has applied `index`.
async fn wait_applied(cluster: &Cluster, c: &KvClient, id: usize, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if cluster
            .status(c, id)
            .await
            .is_some_and(|s| s.groups[0].applied_index >= index)
        {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} did not apply {index}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects the stream's items until an event at `index` or later arrives.
async fn collect_until(s: &mut WatchStream, index: u64, out: &mut Vec<WatchItem>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let item = tokio::time::timeout(left, s.next())
            .await
            .unwrap_or_else(|_| panic!("no event at index {index} in time; got {out:?}"))
            .expect("watch item");
        let done = matches!(&item, WatchItem::Event(e) if e.index >= index);
        out.push(item);
        if done {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_every_change_once_and_in_order_across_node_kills() {
    let mut cluster = start_cluster();
    let c = cluster.client();
    cluster.leader(&c).await;
    let start = c.mkdir(0, "d").await.expect("mkdir").index;
    c.mkdir(0, "other").await.expect("mkdir other");

    let watcher = cluster.client();
    // Bad keys are refused before anything is sent.
    match watcher.watch(0, &[b"bad..key"], 0).await {
        Err(ClientError::Kv {
            error: KvError::InvalidKey(_),
            ..
        }) => {}
        other => panic!("expected INVALID_KEY, got {other:?}"),
    }
    let mut s = watcher.watch(0, &[b"k", b"d"], start).await.expect("watch");

    // Writer: watched and unwatched keys; acknowledged indexes of watched ones.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let writer = {
        let (c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (key, r) = match i % 4 {
                    0 => (
                        "k".to_string(),
                        c.put(0, "k", i.to_string().as_bytes()).await,
                    ),
                    1 => {
                        let k = format!("d.x{}", i % 7);
                        let r = c.put(0, &k, i.to_string().as_bytes()).await;
                        (k, r)
                    }
                    2 => {
                        let k = format!("d.x{}", (i + 3) % 7);
                        let r = c.remove(0, &k).await;
                        (k, r)
                    }
                    _ => (
                        "other.y".to_string(),
                        c.put(0, "other.y", b"not watched").await,
                    ),
                };
                if let Ok(w) = r
                    && key != "other.y"
                {
                    acked.lock().expect("acked").push((w.index, key));
                }
                i += 1;
            }
        })
    };

    let mut items = Vec::new();
    // Let some events flow, then kill the node serving the watch.
    let first_kill_at = Instant::now() + Duration::from_millis(800);
    while Instant::now() < first_kill_at {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), s.next()).await {
            items.push(r.expect("item"));
        }
    }
    let victim = node_of(&cluster, s.server().expect("registered"));
    drop(cluster.procs[victim - 1].take());
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), s.next()).await {
            items.push(r.expect("item"));
        }
    }
    let moved_to = node_of(&cluster, s.server().expect("registered again"));
    assert_ne!(moved_to, victim, "the watch did not leave the killed node");

    // The killed node returns and catches up; then the new server is killed.
    cluster.procs[victim - 1] = Some(spawn_server(BIN, &cluster.config(victim)));
    let mark = c.put(0, "other.y", b"mark").await.expect("put").index;
    wait_applied(&cluster, &c, victim, mark).await;
    let victim2 = node_of(&cluster, s.server().expect("registered"));
    drop(cluster.procs[victim2 - 1].take());
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), s.next()).await {
            items.push(r.expect("item"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let last = c.put(0, "k", b"end").await.expect("final put").index;
    collect_until(&mut s, last, &mut items).await;

    // Every item is an event (nothing was compacted), in strictly increasing
    // index order (one key per write), of a watched key.
    let mut events = Vec::new();
    for it in &items {
        match it {
            WatchItem::Event(e) => events.push(e.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    for w in events.windows(2) {
        assert!(
            w[0].index < w[1].index,
            "out of order or duplicated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    assert!(events.iter().all(|e| e.index > start));
    assert!(
        events
            .iter()
            .all(|e| e.key.as_ref() == b"k" || e.key.starts_with(b"d."))
    );
    // Every acknowledged write of a watched key is there, with its key.
    let by_index: HashMap<u64, &[u8]> = events.iter().map(|e| (e.index, &e.key[..])).collect();
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() > 50, "too few writes: {}", acked.len());
    for (index, key) in &acked {
        assert_eq!(
            by_index.get(index).copied(),
            Some(key.as_bytes()),
            "acknowledged write of {key} at {index} missing"
        );
    }
    // The last event of each key is its final state.
    let mut last_of: BTreeMap<Vec<u8>, (NodeState, Vec<u8>)> = BTreeMap::new();
    for e in &events {
        last_of.insert(e.key.to_vec(), (e.state, e.value.to_vec()));
    }
    for (key, (state, value)) in &last_of {
        let k = String::from_utf8_lossy(key).into_owned();
        let now = c.get(0, &k).await.expect("get").data;
        match state {
            NodeState::Absent => assert!(now.is_none(), "{k} should be absent"),
            _ => assert_eq!(
                now.map(|n| n.value.to_vec()),
                Some(value.clone()),
                "final value of {k}"
            ),
        }
    }
    s.close().await;
    assert!(s.next().await.is_err(), "a closed stream yields nothing");
    watcher.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_older_than_the_history_gets_the_compacted_notice() {
    let mut cluster = start_cluster();
    let c = cluster.client();
    cluster.leader(&c).await;
    let first = c.put(0, "k", b"1").await.expect("put").index;
    for i in 0..20 {
        c.put(0, "k", i.to_string().as_bytes()).await.expect("put");
    }
    let (ok, out) = cluster.admin(&["snapshot"]);
    assert!(ok && out.contains("snapshot"), "{out}");
    let snap = c.put(0, "k", b"after snapshot").await.expect("put").index;

    // Node 1 restarts from its snapshot: its history starts there.
    drop(cluster.procs[0].take());
    cluster.procs[0] = Some(spawn_server(BIN, &cluster.config(1)));
    let mut cfg = KvClientConfig::new(vec![cluster.service[0]]);
    cfg.timeout = Duration::from_secs(10);
    let one = KvClient::new(cfg);
    wait_applied(&cluster, &c, 1, snap).await;

    let mut s = one.watch(0, &[b"k"], first).await.expect("watch");
    let item = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an item in time")
        .expect("item");
    let WatchItem::Compacted {
        resume_index,
        history_floor,
    } = item
    else {
        panic!("expected the compacted notice, got {item:?}");
    };
    assert!(history_floor > first, "floor {history_floor} first {first}");
    assert!(resume_index >= history_floor);
    // Re-read, then the events continue after the resume index.
    let read = c.get(0, "k").await.expect("re-read");
    assert!(read.index >= resume_index);
    let next = c.put(0, "k", b"later").await.expect("put").index;
    let mut items = Vec::new();
    collect_until(&mut s, next, &mut items).await;
    for it in &items {
        let WatchItem::Event(e) = it else {
            panic!("unexpected {it:?}");
        };
        assert!(e.index > resume_index);
    }
    s.close().await;

    // The same resume from a node whose history reaches back works.
    let full = cluster
        .service
        .iter()
        .enumerate()
        .find(|(i, _)| *i != 0)
        .map(|(_, a)| *a)
        .expect("another node");
    let mut cfg = KvClientConfig::new(vec![full]);
    cfg.timeout = Duration::from_secs(10);
    let other = KvClient::new(cfg);
    let mut s = other.watch(0, &[b"k"], first).await.expect("watch");
    let mut items = Vec::new();
    collect_until(&mut s, next, &mut items).await;
    let idx: Vec<u64> = items
        .iter()
        .map(|it| match it {
            WatchItem::Event(e) => e.index,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(idx.len(), 22, "every put after {first}: {idx:?}");
    assert!(idx.windows(2).all(|w| w[0] < w[1]));
    s.close().await;
    other.close().await;
    one.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_one_line_per_event() {
    let cluster = start_cluster();
    let c = cluster.client();
    cluster.leader(&c).await;
    let made = c.mkdir(0, "app").await.expect("mkdir").index.to_string();
    let servers: Vec<String> = cluster.service.iter().map(|a| a.to_string()).collect();
    let mut child = Command::new(BIN)
        .args([
            "kv",
            "--servers",
            &servers.join(","),
            "watch",
            "app",
            "--from-index",
            &made,
            "--count",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read");
    assert!(
        line.starts_with(&format!("watching 1 key(s) of group 0 after index {made}")),
        "{line}"
    );
    let a = c.put(0, "app.a", b"1").await.expect("put").index;
    let d = c.mkdir(0, "app.sub").await.expect("mkdir").index;
    let r = c.remove(0, "app.a").await.expect("rm").index;
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        format!("{a}\tapp.a\tvalue\t1\n{d}\tapp.sub\tdir\t\n{r}\tapp.a\tabsent\t\n")
    );
    c.close().await;
}
