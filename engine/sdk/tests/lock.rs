//! The lock facade against an embedded 3-node cluster: fencing tokens,
//! blocking and future-returning calls, the owner check and bad arguments.

use std::time::{Duration, Instant};

use dongting_sdk::{
    EmbeddedServer, Error, KvClient, ReplyKind, Runtime, code, local_cluster_configs,
};

fn cluster(rt: &Runtime, dir: &tempfile::TempDir) -> (Vec<EmbeddedServer>, String) {
    let cfgs = local_cluster_configs(3, &[0], &dir.path().to_string_lossy()).expect("configs");
    let servers: Vec<EmbeddedServer> = cfgs
        .iter()
        .map(|c| EmbeddedServer::start(rt, c).expect("start"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    'wait: loop {
        for s in &servers {
            if let Ok(st) = s.status()
                && st.groups.iter().any(|g| g.role == "leader" && g.ready)
            {
                break 'wait;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
    let addrs: Vec<String> = servers.iter().map(|s| s.service_addr()).collect();
    (servers, addrs.join(","))
}

#[test]
fn locks_through_the_facade() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(2)?;
    let (servers, addrs) = cluster(&rt, &dir);
    let a = KvClient::new(&rt, &addrs, 5_000)?;
    let b = KvClient::new(&rt, &addrs, 5_000)?;
    a.mkdir(0, b"locks")?;
    let la = a.create_lock(0, b"locks.x")?;
    let lb = b.create_lock(0, b"locks.x")?;

    let t1 = la.try_lock(10_000, 0)?;
    assert!(t1 > 0);
    assert!(la.is_held());
    assert_eq!(la.token(), t1);
    assert!(la.lease_rest_ms() > 9_000);
    assert_eq!(lb.try_lock(10_000, 0)?, 0, "held by a");
    assert!(!lb.is_held());
    assert_eq!(lb.lease_rest_ms(), 0);

    // b waits through an OpFuture; a's release promotes it with a larger token.
    let waiting = lb.try_lock_async(10_000, 8_000);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiting.is_ready());
    la.unlock()?;
    let r = waiting.wait_result()?;
    assert_eq!(r.kind, ReplyKind::Lock);
    assert!(r.token > t1);
    assert!(lb.is_held());

    let e = la.update_lease(5_000).expect_err("a no longer holds it");
    assert_eq!(e.code(), code::KV_NOT_OWNER, "{e}");
    lb.update_lease_async(20_000).wait_result()?;
    assert!(lb.lease_rest_ms() > 19_000);
    lb.close()?;
    assert!(!lb.is_held());
    let t3 = la.try_lock(1_000, 0)?;
    assert!(t3 > r.token, "a new holder gets a larger token");
    assert_eq!(la.token(), t3);

    // Bad arguments: nothing is sent.
    assert_eq!(
        a.create_lock(0, b"bad..key").expect_err("bad key").code(),
        code::KV_INVALID_KEY
    );
    assert_eq!(
        la.try_lock(0, 0).expect_err("zero lease").code(),
        code::INVALID_ARGUMENT
    );
    a.close()?;
    b.close()?;
    for s in &servers {
        s.stop(Duration::from_secs(1))?;
    }
    rt.shutdown(Duration::from_secs(5))?;
    Ok(())
}
