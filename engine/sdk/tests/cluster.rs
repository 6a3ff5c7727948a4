//! The facade against an embedded cluster: every operation, errors, futures,
//! callbacks and shutdown with calls in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dongting_sdk::{
    EmbeddedServer, Error, KvClient, MAX_TIMEOUT_MS, MAX_TTL_MS, NodeKind, Runtime, code,
    local_cluster_configs,
};

fn wait_leader(servers: &[EmbeddedServer], group: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for s in servers {
            if let Ok(st) = s.status()
                && st
                    .groups
                    .iter()
                    .any(|g| g.group_id == group && g.role == "leader" && g.ready)
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no leader for group {group}");
}

fn cluster(rt: &Runtime, dir: &tempfile::TempDir, n: u32) -> (Vec<EmbeddedServer>, String) {
    let cfgs = local_cluster_configs(n, &[0], &dir.path().to_string_lossy()).expect("configs");
    let servers: Vec<EmbeddedServer> = cfgs
        .iter()
        .map(|c| EmbeddedServer::start(rt, c).expect("start"))
        .collect();
    wait_leader(&servers, 0);
    let addrs: Vec<String> = servers.iter().map(|s| s.service_addr()).collect();
    (servers, addrs.join(","))
}

#[test]
fn every_operation_against_three_nodes() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(2)?;
    let (servers, addrs) = cluster(&rt, &dir, 3);
    let c = KvClient::new(&rt, &addrs, 5_000)?;

    assert!(c.mkdir(0, b"app")?.created);
    assert!(!c.mkdir(0, b"app")?.created);
    assert!(c.put(0, b"app.a", b"1")?.created);
    assert!(!c.put(0, b"app.a", b"2")?.created);
    let g = c.get(0, b"app.a")?;
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(&g.nodes[0].value[..], b"2");
    assert_eq!(g.nodes[0].kind, NodeKind::Value);
    assert!(c.get(0, b"app.none")?.nodes.is_empty());

    let bp = c.batch_put(0, &[b"app.b", b"app.c"], &[b"x", b"y"])?;
    assert_eq!(bp.codes, vec![0, 0]);
    let bg = c.batch_get(0, &[b"app.b", b"app.zz"])?;
    assert_eq!(bg.nodes.len(), 2);
    assert_eq!(bg.nodes[1].kind, NodeKind::Absent);
    let l = c.list(0, b"app")?;
    let keys: Vec<&[u8]> = l.nodes.iter().map(|n| &n.key[..]).collect();
    assert_eq!(keys, vec![&b"app.a"[..], b"app.b", b"app.c"]);
    let br = c.batch_remove(0, &[b"app.b", b"app.c"])?;
    assert_eq!(br.codes, vec![0, 0]);

    c.compare_and_set(0, b"app.a", b"2", b"3")?;
    let e = c.compare_and_set(0, b"app.a", b"2", b"4").unwrap_err();
    assert_eq!(e.code(), code::KV_CAS_MISMATCH);
    assert_eq!(Error::code_name(e.code()), "CAS_MISMATCH");

    let t = c.put_temp(0, b"app.t", b"v", 60_000)?;
    assert!(t.deadline_ms > 0);
    assert!(c.update_ttl(0, b"app.t", 30_000)?.deadline_ms > 0);
    assert!(c.make_temp_dir(0, b"tmpdir", 60_000)?.deadline_ms > 0);
    assert_eq!(
        c.put_temp(0, b"app.t", b"v", 0).unwrap_err().code(),
        code::KV_INVALID_TTL
    );

    c.remove(0, b"app.a")?;
    assert_eq!(
        c.remove(0, b"app.a").unwrap_err().code(),
        code::KV_NOT_FOUND
    );
    assert_eq!(
        c.put(0, b"nodir.x", b"v").unwrap_err().code(),
        code::KV_PARENT_NOT_FOUND
    );
    assert_eq!(
        c.put(0, b"\xff", b"v").unwrap_err().code(),
        code::KV_INVALID_KEY
    );
    assert_eq!(
        c.get(7, b"app").unwrap_err().code(),
        code::RAFT_GROUP_NOT_FOUND
    );

    // Many writes in flight at once, completed through callbacks.
    let done = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..200)
        .map(|i| {
            let f = c.put_async(0, format!("app.k{i}").as_bytes(), b"v");
            let d = done.clone();
            f.on_complete(Box::new(move || {
                d.fetch_add(1, Ordering::SeqCst);
            }))
            .expect("callback");
            f
        })
        .collect();
    for f in &futs {
        assert!(f.wait(Some(Duration::from_secs(10))));
        assert!(f.result().is_some_and(|r| r.is_ok()));
    }
    assert_eq!(done.load(Ordering::SeqCst), 200);

    c.close()?;
    assert_eq!(c.get(0, b"app").unwrap_err().code(), code::CLOSED);
    for s in &servers {
        s.stop(Duration::from_secs(1))?;
        assert!(s.is_stopped());
    }
    rt.shutdown(Duration::from_secs(5))?;
    assert_eq!(
        KvClient::new(&rt, &addrs, 0).unwrap_err().code(),
        code::RUNTIME_SHUT_DOWN
    );
    Ok(())
}

#[test]
fn shutdown_completes_calls_in_flight() -> Result<(), Error> {
    let rt = Runtime::new(1)?;
    // Nothing listens there: calls retry until shutdown ends them.
    let c = KvClient::new(&rt, "127.0.0.1:1", 60_000)?;
    let fired = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..20)
        .map(|_| {
            let f = c.get_async(0, b"a");
            let n = fired.clone();
            f.on_complete(Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }))
            .expect("callback");
            f
        })
        .collect();
    let cancelled = c.get_async(0, b"b");
    assert!(cancelled.cancel());
    assert_eq!(cancelled.wait_result().unwrap_err().code(), code::CANCELLED);
    rt.shutdown(Duration::from_secs(5))?;
    for f in &futs {
        assert_eq!(f.wait_result().unwrap_err().code(), code::RUNTIME_SHUT_DOWN);
    }
    assert_eq!(fired.load(Ordering::SeqCst), 20);
    assert_eq!(
        c.put(0, b"a", b"b").unwrap_err().code(),
        code::RUNTIME_SHUT_DOWN
    );
    Ok(())
}

#[test]
fn bad_arguments_are_refused() {
    let rt = Runtime::new(1).expect("runtime");
    assert_eq!(
        KvClient::new(&rt, "", 1_000).unwrap_err().code(),
        code::INVALID_ARGUMENT
    );
    assert_eq!(
        KvClient::new(&rt, "nohost", 1_000).unwrap_err().code(),
        code::INVALID_ARGUMENT
    );
    assert_eq!(
        EmbeddedServer::start(&rt, "node_id = 0")
            .unwrap_err()
            .code(),
        code::CONFIG_ERROR
    );
    assert_eq!(
        Runtime::new(100_000).unwrap_err().code(),
        code::INVALID_ARGUMENT
    );
    let c = KvClient::new(&rt, "127.0.0.1:1", 1_000).expect("client");
    assert_eq!(
        c.batch_put(0, &[b"a"], &[]).unwrap_err().code(),
        code::INVALID_ARGUMENT
    );
    rt.shutdown(Duration::from_secs(1)).expect("shutdown");
}

/// The error of `r`, which must be `code` with a message ending in `tail`.
fn refused<T: std::fmt::Debug>(r: Result<T, Error>, code: i32, tail: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), code, "{e}");
    assert!(e.message().ends_with(tail), "{e}");
}

#[test]
fn numbers_out_of_range_are_refused_before_sending() -> Result<(), Error> {
    let rt = Runtime::new(1)?;
    // A zero timeout is refused, not taken as a default.
    for (t, tail) in [
        (0, "timeout_ms must be between 1 and 86400000, got 0"),
        (
            MAX_TIMEOUT_MS + 1,
            "timeout_ms must be between 1 and 86400000, got 86400001",
        ),
    ] {
        refused(
            KvClient::new(&rt, "127.0.0.1:1", t),
            code::INVALID_ARGUMENT,
            tail,
        );
    }
    // Port 0 is refused at once, whatever the timeout.
    let start = Instant::now();
    for servers in ["127.0.0.1:0", "127.0.0.1:1, localhost:0"] {
        let e = KvClient::new(&rt, servers, 60_000).expect_err("port 0");
        assert_eq!(e.code(), code::INVALID_ARGUMENT);
        assert!(e.message().contains(":0\" has port 0"), "{e}");
    }
    assert!(start.elapsed() < Duration::from_secs(5));

    // Nothing listens there: a call that passes the checks fails on the network.
    let c = KvClient::new(&rt, "127.0.0.1:1", 300)?;
    for bad in [0, MAX_TTL_MS + 1] {
        let tail = format!("ttl_ms must be between 1 and 2592000000, got {bad}");
        refused(c.put_temp(0, b"t", b"v", bad), code::KV_INVALID_TTL, &tail);
        refused(c.make_temp_dir(0, b"t", bad), code::KV_INVALID_TTL, &tail);
        refused(c.update_ttl(0, b"t", bad), code::KV_INVALID_TTL, &tail);
    }
    let sent = c
        .put_temp(0, b"t", b"v", MAX_TTL_MS)
        .expect_err("no server");
    assert!(
        [code::TIMEOUT, code::NETWORK_ERROR].contains(&sent.code()),
        "the longest TTL is sent: {sent}"
    );

    let l = c.create_lock(0, b"l")?;
    let lease = |got: u64| format!("lease_ms must be between 1 and 2592000000, got {got}");
    refused(l.try_lock(0, 0), code::INVALID_ARGUMENT, &lease(0));
    refused(
        l.try_lock(MAX_TTL_MS + 1, 0),
        code::INVALID_ARGUMENT,
        &lease(MAX_TTL_MS + 1),
    );
    refused(
        l.try_lock(1_000, MAX_TTL_MS + 1),
        code::INVALID_ARGUMENT,
        "wait_timeout_ms must be between 0 and 2592000000, got 2592000001",
    );
    refused(l.update_lease(0), code::INVALID_ARGUMENT, &lease(0));
    refused(
        l.update_lease(MAX_TTL_MS + 1),
        code::INVALID_ARGUMENT,
        &lease(MAX_TTL_MS + 1),
    );
    let sent = l.try_lock(MAX_TTL_MS, MAX_TTL_MS).expect_err("no server");
    assert!(
        [code::TIMEOUT, code::NETWORK_ERROR].contains(&sent.code()),
        "the longest lease and wait are sent: {sent}"
    );
    rt.shutdown(Duration::from_secs(1))?;
    Ok(())
}
