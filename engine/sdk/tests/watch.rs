//! The facade's watch handle against an embedded cluster: events in order,
//! a consumer too slow for its queue, the serving node stopping, close.

use std::time::{Duration, Instant};

use dongting_sdk::{
    EmbeddedServer, Error, KvClient, MAX_TIMEOUT_MS, NodeKind, ReplyKind, Runtime, WatchEventKind,
    code, local_cluster_configs,
};

fn wait_leader(servers: &[EmbeddedServer]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for s in servers {
            if let Ok(st) = s.status()
                && st.groups.iter().any(|g| g.role == "leader" && g.ready)
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no leader");
}

/// A runtime, a one-node cluster with data under `dir` whose group 0 has a
/// leader, and a client of it.
fn one_node(dir: &std::path::Path) -> Result<(Runtime, EmbeddedServer, KvClient), Error> {
    let rt = Runtime::new(2)?;
    let cfgs = local_cluster_configs(1, &[0], &dir.to_string_lossy())?;
    let server = EmbeddedServer::start(&rt, &cfgs[0])?;
    wait_leader(std::slice::from_ref(&server));
    let c = KvClient::new(&rt, &server.service_addr(), 10_000)?;
    Ok((rt, server, c))
}

#[test]
fn a_watch_survives_a_slow_consumer_and_its_node_stopping() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(2)?;
    let cfgs = local_cluster_configs(3, &[0], &dir.path().to_string_lossy())?;
    let servers: Vec<EmbeddedServer> = cfgs
        .iter()
        .map(|c| EmbeddedServer::start(&rt, c))
        .collect::<Result<_, _>>()?;
    wait_leader(&servers);
    let addrs: Vec<String> = servers.iter().map(|s| s.service_addr()).collect();
    let writer = KvClient::new(&rt, &addrs.join(","), 10_000)?;
    let start = writer.mkdir(0, b"app")?.index;

    // A fresh client's first call goes to the first server of its list.
    let watcher = KvClient::new(&rt, &addrs.join(","), 10_000)?;
    let bad = watcher.watch(0, &[b"bad..key"], 0).expect_err("bad key");
    assert_eq!(bad.code(), code::KV_INVALID_KEY);
    let w = watcher.watch(0, &[b"app"], start)?;

    // Far more pushes than the client queues while nobody reads.
    let mut acked = Vec::new();
    for i in 0..600u32 {
        let key = format!("app.k{}", i % 10);
        acked.push(
            writer
                .put(0, key.as_bytes(), i.to_string().as_bytes())?
                .index,
        );
    }
    // The serving node stops; the watch moves on by itself.
    servers[0].stop(Duration::from_secs(2))?;
    for i in 600..700u32 {
        acked.push(writer.put(0, b"app.last", i.to_string().as_bytes())?.index);
    }
    let last = *acked.last().expect("writes");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last().is_none_or(|i| *i < last) {
        assert!(Instant::now() < deadline, "events missing: {seen:?}");
        if let Some(e) = w.next(1_000)? {
            assert_eq!(e.kind, WatchEventKind::Changed, "{e:?}");
            assert_eq!(e.node_kind, NodeKind::Value);
            assert!(e.key.starts_with(b"app."));
            seen.push(e.index);
        }
    }
    assert_eq!(seen, acked, "every write once, in order");
    assert!(w.last_index()? >= last);
    assert!(w.next(50)?.is_none(), "nothing more");
    w.close()?;
    assert_eq!(w.next(50).expect_err("closed").code(), code::CLOSED);
    watcher.close()?;
    writer.close()?;
    for s in &servers[1..] {
        s.stop(Duration::from_secs(1))?;
    }
    rt.shutdown(Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn next_async_calls_back_with_events_timeouts_and_closed() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt, server, c) = one_node(dir.path())?;
    let start = c.mkdir(0, b"cfg")?.index;
    let w = c.watch(0, &[b"cfg"], start)?;

    let (tx, rx) = std::sync::mpsc::channel();
    let next = |timeout_ms: u64| {
        let tx = tx.clone();
        w.next_async(
            timeout_ms,
            Box::new(move |r, last| {
                let _ = tx.send((r, last));
            }),
        );
    };
    // Nothing written yet: the call ends empty after its timeout.
    next(50);
    let (r, last) = rx.recv_timeout(Duration::from_secs(5)).expect("callback");
    assert!(r?.is_none());
    assert!(last >= start, "{last} < {start}");

    // Two queued calls get two writes, in order, with the progress index.
    next(5_000);
    next(5_000);
    let a = c.put(0, b"cfg.a", b"1")?.index;
    let b = c.put(0, b"cfg.b", b"2")?.index;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (r, last) = rx.recv_timeout(Duration::from_secs(10)).expect("callback");
        let e = r?.expect("an event");
        assert_eq!(e.kind, WatchEventKind::Changed);
        assert!(last >= e.index, "{last} < {}", e.index);
        got.push((e.index, e.key.to_vec(), e.value.to_vec()));
    }
    assert_eq!(
        got,
        vec![
            (a, b"cfg.a".to_vec(), b"1".to_vec()),
            (b, b"cfg.b".to_vec(), b"2".to_vec())
        ]
    );

    // A bad timeout is refused at once, on this thread.
    next(u64::MAX);
    let (r, _) = rx.try_recv().expect("called at once");
    assert_eq!(r.expect_err("bad timeout").code(), code::INVALID_ARGUMENT);
    let e = w.next(MAX_TIMEOUT_MS + 1).expect_err("bad timeout");
    assert_eq!(e.code(), code::INVALID_ARGUMENT);
    assert_eq!(
        e.message(),
        "timeout_ms must be between 0 and 86400000, got 86400001"
    );
    // A zero timeout takes only what already arrived.
    assert_eq!(w.next(0)?, None);

    w.close()?;
    next(50);
    let (r, last) = rx.recv_timeout(Duration::from_secs(5)).expect("callback");
    assert_eq!(r.expect_err("closed").code(), code::CLOSED);
    assert_eq!(last, 0);
    c.close()?;
    server.stop(Duration::from_secs(1))?;
    rt.shutdown(Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn a_watch_opens_and_closes_through_futures_and_close_ends_a_waiting_read() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt, server, c) = one_node(dir.path())?;
    let start = c.mkdir(0, b"open")?.index;

    let bad = c.watch_async(0, &[b"bad..key"], 0).wait_result();
    assert_eq!(bad.expect_err("bad key").code(), code::KV_INVALID_KEY);
    let r = c.watch_async(0, &[b"open"], start).wait_result()?;
    assert_eq!(r.kind, ReplyKind::Watch);
    let w = r.watch.expect("the reply holds the watch");
    assert!(w.last_index()? >= start);

    let put = c.put(0, b"open.k", b"v")?.index;
    let e = w.next(10_000)?.expect("an event");
    assert_eq!(e.index, put);
    assert!(w.last_index()? >= put, "last_index advances with reads");

    // A read waiting for a minute ends as soon as the watch is closed.
    let (tx, rx) = std::sync::mpsc::channel();
    w.next_async(
        60_000,
        Box::new(move |r, last| {
            let _ = tx.send((r, last));
        }),
    );
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let closed = w.close_async();
    let (r, last) = rx.recv_timeout(Duration::from_secs(5)).expect("callback");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(r.expect_err("closed").code(), code::CLOSED);
    assert_eq!(last, 0);
    closed.wait_result()?;
    assert_eq!(w.close_async().wait_result()?.kind, ReplyKind::Done);
    assert_eq!(w.next(0).expect_err("closed").code(), code::CLOSED);

    c.close()?;
    server.stop(Duration::from_secs(1))?;
    rt.shutdown(Duration::from_secs(5))?;
    assert_eq!(
        c.watch_async(0, &[b"open"], 0)
            .wait_result()
            .expect_err("shut down")
            .code(),
        code::RUNTIME_SHUT_DOWN
    );
    Ok(())
}
