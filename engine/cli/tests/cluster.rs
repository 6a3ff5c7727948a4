//! Three `dongting server` processes on loopback: elections, reads and writes,
//! kill -9 of the leader, restart and catch-up, leader transfer, the config
//! check between peers, and bad inputs.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_elect_replicate_fail_over_and_catch_up() {
    let mut cluster = Cluster::start(BIN);
    let c = cluster.client();
    let first = cluster.leader(&c).await;

    // Writes and reads.
    c.mkdir(0, "app").await.expect("mkdir");
    let mut acked = Vec::new();
    for i in 0..50 {
        let w = c
            .put(0, &format!("app.k{i}"), format!("v{i}").as_bytes())
            .await
            .expect("put");
        assert!(w.index > 0);
        acked.push(i);
    }
    let r = c.get(0, "app.k7").await.expect("get");
    assert_eq!(r.data.expect("present").value.as_ref(), b"v7");
    let root_before = c.list(0, "").await.expect("list").data;

    // Bad inputs get their errors and change nothing.
    let e = c.put(0, "app..x", b"v").await.expect_err("bad key");
    assert_eq!(kv_code(&e), Some("INVALID_KEY"), "{e}");
    let e = c
        .put(0, "app.big", &[7u8; 5000])
        .await
        .expect_err("oversized");
    assert_eq!(kv_code(&e), Some("VALUE_TOO_LARGE"), "{e}");
    let e = c.put(0, "nodir.x", b"v").await.expect_err("missing parent");
    assert_eq!(kv_code(&e), Some("PARENT_NOT_FOUND"), "{e}");
    let e = c.remove(0, "app").await.expect_err("non-empty dir");
    assert_eq!(kv_code(&e), Some("DIR_NOT_EMPTY"), "{e}");
    let e = c.put(0, "app.k1", b"x").await.map(|_| ()).and(
        c.compare_and_set(0, "app.k2", b"nope", b"y")
            .await
            .map(|_| ()),
    );
    assert!(
        matches!(
            &e,
            Err(ClientError::Kv {
                error: KvError::CasMismatch(_),
                ..
            })
        ),
        "{e:?}"
    );
    let e = c.get(9, "app").await.expect_err("unknown group");
    assert_eq!(
        e.code(),
        dongting_net::Status::RAFT_GROUP_NOT_FOUND.0,
        "{e}"
    );
    assert_eq!(c.list(0, "").await.expect("list").data, root_before);
    assert!(c.get(0, "app.big").await.expect("get").data.is_none());
    assert_eq!(
        c.get(0, "app.k2")
            .await
            .expect("get")
            .data
            .expect("k2")
            .value
            .as_ref(),
        b"v2"
    );

    // Leader transfer through the admin command.
    let target = if first == 1 { 2 } else { 1 };
    let (ok, out) = cluster.admin(&["transfer-leader", "--to", &target.to_string()]);
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.leader(&c).await != target {
        assert!(Instant::now() < deadline, "transfer did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out) = cluster.admin(&["status"]);
    assert!(ok && out.contains("role=leader"), "{out}");

    // kill -9 of the leader: another is elected and no acknowledged write is lost.
    let victim = target;
    drop(cluster.procs[victim - 1].take());
    let next = cluster.leader(&c).await;
    assert_ne!(next, victim);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = cluster.status(&c, next).await.expect("status");
        let p = s
            .peers
            .iter()
            .find(|p| p.node_id as usize == victim)
            .expect("peer");
        if !p.connected && !p.config_checked && !s.ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead peer still shown connected: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 50..80 {
        c.put(0, &format!("app.k{i}"), format!("v{i}").as_bytes())
            .await
            .expect("put after failover");
        acked.push(i);
    }
    let keys: Vec<String> = acked.iter().map(|i| format!("app.k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let all = c.batch_get(0, &refs).await.expect("batch get");
    for (i, item) in acked.iter().zip(&all.data) {
        let n = item
            .as_ref()
            .expect("item")
            .as_ref()
            .unwrap_or_else(|| panic!("app.k{i} lost"));
        let want = if *i == 1 {
            "x".to_string()
        } else {
            format!("v{i}")
        };
        assert_eq!(n.value.as_ref(), want.as_bytes());
    }

    // The killed node restarts and catches up.
    cluster.procs[victim - 1] = Some(spawn_server(BIN, &cluster.config(victim)));
    let leader_commit = all.index;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = cluster.status(&c, victim).await
            && s.groups.iter().any(|g| g.applied_index >= leader_commit)
        {
            break;
        }
        assert!(Instant::now() < deadline, "restarted node did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A stale read on the restarted node sees the data.
    let mut cfg = KvClientConfig::new(vec![cluster.service[victim - 1]]);
    cfg.timeout = Duration::from_secs(5);
    let one = KvClient::new(cfg);
    let r = one
        .get_with(
            0,
            bytes::Bytes::from_static(b"app.k79"),
            dongting_client::Consistency::Stale,
        )
        .await
        .expect("stale read");
    assert_eq!(r.data.expect("k79").value.as_ref(), b"v79");
    one.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_different_servers_list_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(7);
    let rep = &ports[..3];
    let svc = &ports[3..6];
    let wrong = ports[6];
    for id in 1..=2 {
        std::fs::write(
            dir.path().join(format!("node{id}.toml")),
            cluster_toml(id, rep, svc[id - 1], None),
        )
        .expect("cfg");
    }
    // Node 3 believes node 2 lives elsewhere.
    let bad = format!(
        "  {{ id = 1, address = \"127.0.0.1:{}\" }},\n  {{ id = 2, address = \"127.0.0.1:{wrong}\" }},\n  {{ id = 3, address = \"127.0.0.1:{}\" }},",
        rep[0], rep[2]
    );
    std::fs::write(
        dir.path().join("node3.toml"),
        cluster_toml(3, rep, svc[2], Some(&bad)),
    )
    .expect("cfg");
    let procs: Vec<Proc> = (1..=3)
        .map(|id| spawn_server(BIN, &dir.path().join(format!("node{id}.toml"))))
        .collect();
    let mut cfg = KvClientConfig::new(vec![SocketAddr::from(([127, 0, 0, 1], svc[0]))]);
    cfg.timeout = Duration::from_secs(2);
    let c = KvClient::new(cfg);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = c
            .server_status(SocketAddr::from(([127, 0, 0, 1], svc[0])))
            .await
            .expect("status");
        let p3 = s.peers.iter().find(|p| p.node_id == 3).expect("peer 3");
        let p2 = s.peers.iter().find(|p| p.node_id == 2).expect("peer 2");
        // Node 1 refusing node 3's own check shows in node 1's log once node
        // 3 has tried (its first try may come after node 1's status shows
        // node 3's refusal).
        let log1 = procs[0].log.lock().expect("log").clone();
        let refused_in_log = log1.contains(&format!("has node 2 at 127.0.0.1:{wrong}"));
        if p2.config_checked
            && !p3.config_checked
            && p3.message.contains("127.0.0.1:")
            && refused_in_log
        {
            assert!(!s.ready);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mismatch not reported: {s:?}\nnode 1 log:\n{log1}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.close().await;
}

/// Node replacement as the operator's guide describes it: add the new node as
/// an observer (it catches up through a snapshot, the log it needs being
/// compacted), promote it through joint consensus, remove the old node; plus a
/// group added and removed at runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_node_through_an_observer_and_joint_consensus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(8);
    let rep = &ports[..4];
    let svc = &ports[4..];
    for id in 1..=4 {
        let mut text = cluster_toml(id, rep, svc[id - 1], None);
        if id == 4 {
            text = text.replace("[[groups]]\nid = 0\nmembers = [1, 2, 3]\n", "");
        }
        std::fs::write(dir.path().join(format!("node{id}.toml")), text).expect("cfg");
    }
    let mut procs: Vec<Option<Proc>> = (1..=4)
        .map(|id| {
            Some(spawn_server(
                BIN,
                &dir.path().join(format!("node{id}.toml")),
            ))
        })
        .collect();
    let cluster = Cluster::of_files(BIN, dir, rep, svc);
    let admin_on = |ids: &[usize], args: &[&str]| -> (bool, String) {
        let servers: Vec<SocketAddr> = ids.iter().map(|i| cluster.replicate[i - 1]).collect();
        run_admin(BIN, &servers, args)
    };
    let c = cluster.client();
    c.mkdir(0, "cfg").await.expect("mkdir");
    for i in 0..20 {
        c.put(0, &format!("cfg.k{i}"), b"v").await.expect("put");
    }
    let (ok, out) = admin_on(&[1, 2, 3], &["snapshot"]);
    assert!(ok && out.contains("snapshot saved"), "{out}");

    // A node that does not follow the log cannot be made a voter.
    let (ok, out) = admin_on(&[1, 2, 3], &["prepare", "--members", "1,2,4"]);
    assert!(
        !ok && out.contains("does not receive group 0's log"),
        "{out}"
    );

    // 1. Node 4 joins as an observer.
    let (ok, out) = admin_on(
        &[1, 2, 3],
        &["prepare", "--members", "1,2,3", "--observers", "4"],
    );
    assert!(ok, "{out}");
    commit_prepared(&admin_on, &out).await;
    // An observer that has not started the group yet cannot vote either.
    let (ok, out) = admin_on(&[1, 2, 3], &["prepare", "--members", "1,2,4"]);
    assert!(!ok && out.contains("has not answered"), "{out}");
    let (ok, out) = admin_on(
        &[4],
        &["add-group", "--members", "1,2,3", "--observers", "4"],
    );
    assert!(ok, "{out}");
    let w = c.put(0, "cfg.after", b"observer").await.expect("put");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c
            .server_status(cluster.service[3])
            .await
            .expect("status of node 4");
        let g = &s.groups[0];
        if g.applied_index >= w.index {
            assert_eq!(g.role, Some(Role::Observer));
            assert!(
                g.snapshot_index > 0,
                "node 4 caught up without a snapshot: {g:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "observer did not catch up: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. Promote node 4 and drop node 3 through joint consensus.
    let (ok, out) = admin_on(&[1, 2, 3], &["prepare", "--members", "1,2,4"]);
    assert!(ok, "{out}");
    commit_prepared(&admin_on, &out).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.server_status(cluster.service[3]).await.expect("status");
        if s.groups[0].members == vec![1, 2, 4] && s.groups[0].joint.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "membership not changed: {:?}",
            s.groups[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. The old node goes away; the group keeps working with node 4 voting.
    drop(procs[2].take());
    let mut cfg = KvClientConfig::new(vec![
        cluster.service[0],
        cluster.service[1],
        cluster.service[3],
    ]);
    cfg.timeout = Duration::from_secs(10);
    let c2 = KvClient::new(cfg);
    c2.put(0, "cfg.replaced", b"yes")
        .await
        .expect("put after replacement");
    let r = c2
        .batch_get(0, &["cfg.k0", "cfg.k19", "cfg.after", "cfg.replaced"])
        .await
        .expect("read");
    assert!(
        r.data.iter().all(|x| matches!(x, Ok(Some(_)))),
        "{:?}",
        r.data
    );

    // Node 4 (whose group was added at runtime, not in its file) restarts and
    // rejoins as a voter.
    drop(procs[3].take());
    c2.put(0, "cfg.while4down", b"y")
        .await
        .expect("put with node 4 down");
    procs[3] = Some(spawn_server(BIN, &cluster.dir.path().join("node4.toml")));
    let target = c2.put(0, "cfg.back", b"z").await.expect("put").index;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.server_status(cluster.service[3]).await;
        if let Some(g) = s.ok().and_then(|s| s.groups.first().cloned())
            && g.applied_index >= target
        {
            assert_eq!(g.members, vec![1, 2, 4]);
            assert!(
                matches!(g.role, Some(Role::Follower | Role::Leader)),
                "{g:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "node 4 did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4. A group added and removed at runtime.
    let (ok, out) = admin_on(
        &[1, 2, 4],
        &["--group", "5", "add-group", "--members", "1,2,4"],
    );
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c2.put(5, "k", b"in group 5").await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "group 5 never served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c2.get(5, "k")
            .await
            .expect("get")
            .data
            .expect("k")
            .value
            .as_ref(),
        b"in group 5"
    );
    let (ok, out) = admin_on(&[1, 2, 4], &["--group", "5", "remove-group"]);
    assert!(ok, "{out}");
    let (ok, out) = admin_on(&[1, 2, 4], &["list-groups"]);
    assert!(ok && out.lines().all(|l| l.ends_with(": 0")), "{out}");
    let e = c2.get(5, "k").await.expect_err("group 5 is gone");
    assert_eq!(
        e.code(),
        dongting_net::Status::RAFT_GROUP_NOT_FOUND.0,
        "{e}"
    );
    c2.close().await;
    c.close().await;
    drop(procs);
}

/// SIGTERM stops a node gracefully (exit status 0, snapshot saved, log
/// closed); the restarted node recovers from the snapshot and its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_and_restart_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(2);
    let text = format!(
        "node_id = 1\ndata_dir = \"node1\"\nservice_port = {}\nelect_timeout_ms = 500\n\
         heartbeat_interval_ms = 50\nservers = [ {{ id = 1, address = \"127.0.0.1:{}\" }} ]\n\
         [[groups]]\nid = 0\nmembers = [1]\n",
        ports[1], ports[0]
    );
    let path = dir.path().join("node1.toml");
    std::fs::write(&path, text).expect("cfg");
    let svc = SocketAddr::from(([127, 0, 0, 1], ports[1]));
    let mut cfg = KvClientConfig::new(vec![svc]);
    cfg.timeout = Duration::from_secs(10);
    let mut p = spawn_server(BIN, &path);
    let c = KvClient::new(cfg.clone());
    c.mkdir(0, "s").await.expect("mkdir");
    let w = c.put(0, "s.a", b"1").await.expect("put");
    c.close().await;
    send_signal(p.child.id(), "-TERM", false);
    let status = p.child.wait().expect("wait");
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        p.log.lock().expect("log")
    );
    // The log reaches us through a pipe that may lag the exit a little.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !p.log.lock().expect("log").contains("group closed")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(p.log.lock().expect("log").contains("group closed"));
    let snaps = std::fs::read_dir(dir.path().join("node1/group-0/snapshot"))
        .expect("snapshot dir")
        .count();
    assert!(snaps >= 1, "no snapshot saved on close");
    drop(p);

    let _p = spawn_server(BIN, &path);
    let c = KvClient::new(cfg);
    let r = c.get(0, "s.a").await.expect("get after restart");
    assert_eq!(r.data.expect("s.a").value.as_ref(), b"1");
    assert!(r.index >= w.index);
    c.close().await;
}

/// Many concurrent writers while the leader is killed with SIGKILL: every
/// acknowledged write survives, and after the killed node returns all three
/// replicas hold the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_survive_a_leader_kill() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut cluster = Cluster::start(BIN);
    let c = cluster.client();
    let leader = cluster.leader(&c).await;
    c.mkdir(0, "w").await.expect("mkdir");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..40)
        .map(|t| {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w.t{t}-{i}");
                    if c.put(0, &key, key.as_bytes()).await.is_ok() {
                        acked.push(key);
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(cluster.procs[leader - 1].take());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(
        acked.len() > 100,
        "too few writes acknowledged: {}",
        acked.len()
    );
    for chunk in acked.chunks(500) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let r = c.batch_get(0, &refs).await.expect("batch get");
        for (k, item) in chunk.iter().zip(&r.data) {
            let n = item.as_ref().expect("item").as_ref();
            assert_eq!(
                n.map(|n| n.value.as_ref()),
                Some(k.as_bytes()),
                "acknowledged {k} lost"
            );
        }
    }
    // The killed node comes back; all replicas converge on the same state.
    cluster.procs[leader - 1] = Some(spawn_server(BIN, &cluster.config(leader)));
    let target = c.put(0, "w.last", b"x").await.expect("put").index;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lists = Vec::new();
    for id in 1..=3 {
        let mut cfg = KvClientConfig::new(vec![cluster.service[id - 1]]);
        cfg.timeout = Duration::from_secs(5);
        let one = KvClient::new(cfg);
        loop {
            let s = cluster.status(&c, id).await;
            if s.is_some_and(|s| s.groups[0].applied_index >= target) {
                break;
            }
            assert!(Instant::now() < deadline, "node {id} did not catch up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = one
            .get_with(
                0,
                bytes::Bytes::from_static(b"w.last"),
                dongting_client::Consistency::Stale,
            )
            .await
            .expect("stale read");
        assert!(r.data.is_some());
        // Same children on every replica once applied to the same index.
        let l = one
            .list_with(0, "w", dongting_client::Consistency::Stale)
            .await
            .expect("stale list")
            .data;
        lists.push(l);
        one.close().await;
    }
    assert!(lists[0].len() > acked.len());
    assert!(lists.iter().all(|l| *l == lists[0]), "replicas differ");
    c.close().await;
}

/// Commits the change whose prepare printed `prepared` (`... index N)`),
/// retrying for 10 s while the nodes refuse it (not yet applied everywhere).
/// A node replaced while the others keep running: their servers lists change
/// at runtime (`add-node`, `remove-node`), a client keeps writing throughout,
/// and a restarted node comes back with the list it had in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_a_node_without_restarting_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(8);
    let rep = &ports[..4];
    let svc = &ports[4..];
    // Nodes 1-3 start knowing only each other; node 4 knows all four and
    // hosts no group yet.
    for id in 1..=4 {
        let text = if id == 4 {
            cluster_toml(id, rep, svc[id - 1], None)
                .replace("[[groups]]\nid = 0\nmembers = [1, 2, 3]\n", "")
        } else {
            cluster_toml(id, &rep[..3], svc[id - 1], None)
        };
        std::fs::write(dir.path().join(format!("node{id}.toml")), text).expect("cfg");
    }
    let spawn = |id: usize| spawn_server(BIN, &dir.path().join(format!("node{id}.toml")));
    let mut procs: Vec<Option<Proc>> = vec![Some(spawn(1)), Some(spawn(2)), Some(spawn(3)), None];
    let replicate: Vec<SocketAddr> = rep
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let service: Vec<SocketAddr> = svc
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let admin_on = |ids: &[usize], args: &[&str]| -> (bool, String) {
        let servers: Vec<SocketAddr> = ids.iter().map(|i| replicate[i - 1]).collect();
        run_admin(BIN, &servers, args)
    };
    let peers_of = |s: &NodeStatus| -> Vec<u32> { s.peers.iter().map(|p| p.node_id).collect() };
    let mut cfg = KvClientConfig::new(service.clone());
    cfg.timeout = Duration::from_secs(15);
    let c = KvClient::new(cfg);
    c.mkdir(0, "live").await.expect("mkdir");

    // A client writes throughout; every write must succeed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut written = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.put(0, &format!("live.k{written}"), b"v")
                    .await
                    .map_err(|e| format!("write {written} failed: {e}"))?;
                written += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<u32, String>(written)
        })
    };

    // 1. Node 4 enters the servers lists of nodes 1-3; adding it again is a
    // no-op, at another address it is refused.
    let four = replicate[3].to_string();
    let (ok, out) = admin_on(&[1, 2, 3], &["add-node", "--node", "4", "--address", &four]);
    assert!(
        ok && out.matches("added to the servers list").count() == 3,
        "{out}"
    );
    let (ok, out) = admin_on(&[1], &["add-node", "--node", "4", "--address", &four]);
    assert!(ok && out.contains("nothing changed"), "{out}");
    let (ok, out) = admin_on(
        &[1],
        &["add-node", "--node", "4", "--address", "127.0.0.1:1"],
    );
    assert!(!ok && out.contains("remove it first"), "{out}");

    // 2. Node 4 starts; the others link to it without a restart.
    procs[3] = Some(spawn(4));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.server_status(service[0]).await.expect("status of node 1");
        if peers_of(&s) == vec![2, 3, 4] && s.ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 never linked to node 4: {:?}",
            s.peers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3. Node 4 joins group 0 as an observer, then replaces node 3 as a voter.
    let (ok, out) = admin_on(
        &[1, 2, 3],
        &["prepare", "--members", "1,2,3", "--observers", "4"],
    );
    assert!(ok, "{out}");
    commit_prepared(&admin_on, &out).await;
    let (ok, out) = admin_on(
        &[4],
        &["add-group", "--members", "1,2,3", "--observers", "4"],
    );
    assert!(ok, "{out}");
    // Node 3 still votes in group 0: it cannot leave the servers list.
    let (ok, out) = admin_on(&[1], &["remove-node", "--node", "3"]);
    assert!(!ok && out.contains("group 0"), "{out}");
    let (ok, out) = admin_on(&[1], &["remove-node", "--node", "1"]);
    assert!(!ok && out.contains("cannot remove itself"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = admin_on(&[1, 2, 3], &["prepare", "--members", "1,2,4"]);
        if ok {
            commit_prepared(&admin_on, &out).await;
            break;
        }
        // Refused until node 4 follows the log.
        assert!(Instant::now() < deadline, "prepare refused: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.server_status(service[3]).await.expect("status of node 4");
        if s.groups
            .first()
            .is_some_and(|g| g.members == vec![1, 2, 4] && g.joint.is_none())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "membership not changed: {:?}",
            s.groups
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4. Node 3 stops and leaves the servers lists of the others.
    drop(procs[2].take());
    let (ok, out) = admin_on(&[1, 2, 4], &["remove-node", "--node", "3"]);
    assert!(
        ok && out.matches("removed from the servers list").count() == 3,
        "{out}"
    );
    for i in [0, 1, 3] {
        let s = c.server_status(service[i]).await.expect("status");
        assert!(
            !peers_of(&s).contains(&3),
            "node {} still lists node 3: {:?}",
            i + 1,
            s.peers
        );
    }

    // 5. Node 1 restarts with its file's 3-entry list and uses the list it
    // had in force, persisted in its data directory.
    drop(procs[0].take());
    procs[0] = Some(spawn(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = c.server_status(service[0]).await
            && peers_of(&s) == vec![2, 4]
            && s.ready
            && s.groups
                .first()
                .is_some_and(|g| g.members == vec![1, 2, 4] && g.leader_id != 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 did not come back with [1, 2, 4]"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = procs[0]
        .as_ref()
        .expect("node 1")
        .log
        .lock()
        .expect("log")
        .clone();
    assert!(
        log.contains("servers list in force: the one persisted"),
        "{log}"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer
        .await
        .expect("writer")
        .expect("every write succeeded");
    assert!(written > 10, "only {written} writes");
    let r = c
        .get(0, &format!("live.k{}", written - 1))
        .await
        .expect("read the last write");
    assert!(r.data.is_some());
    c.close().await;
    drop(procs);
}

async fn commit_prepared(admin_on: &impl Fn(&[usize], &[&str]) -> (bool, String), prepared: &str) {
    let prepare = prepared
        .split("index ")
        .last()
        .and_then(|s| s.trim().trim_end_matches(')').parse::<u64>().ok())
        .expect("prepare index");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = admin_on(
            &[1, 2, 3],
            &["commit", "--prepare-index", &prepare.to_string()],
        );
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "commit refused: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
