//! Distributed locks and temporary nodes through KvClient against an
//! in-process 3-node cluster: fencing tokens, promotion by push on unlock and
//! on lease expiry, wait timeouts, owner checks and the auto-renewal lock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dongting_client::{ClientError, KvClient, KvClientConfig, RECHECK_INTERVAL};
use dongting_kv::KvError;
use dongting_testkit::{LockEvents, shutdown, start_three};

fn client(svc: &[SocketAddr]) -> KvClient {
    let mut cfg = KvClientConfig::new(svc.to_vec());
    cfg.timeout = Duration::from_secs(5);
    KvClient::new(cfg)
}

/// Three nodes with data under `dir` and two clients of them.
async fn two_clients(dir: &std::path::Path) -> (Vec<dongting_server::Node>, KvClient, KvClient) {
    let (nodes, svc) = start_three(dir, "").await;
    let (a, b) = (client(&svc), client(&svc));
    (nodes, a, b)
}

fn kv_error(r: Result<impl std::fmt::Debug, ClientError>) -> KvError {
    match r {
        Err(ClientError::Kv { error, .. }) => error,
        other => panic!("expected a DtKV error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_promoted_by_push_with_larger_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, a, b) = two_clients(dir.path()).await;
    a.mkdir(0, "locks").await.expect("mkdir");
    let la = a.create_lock(0, "locks.l1").expect("lock a");
    let lb = b.create_lock(0, "locks.l1").expect("lock b");

    let t1 = la
        .try_lock(10_000, 0)
        .await
        .expect("try a")
        .expect("a acquires");
    assert!(la.is_held_by_current_client());
    assert!(la.lease_rest_millis() > 9_000);
    // Re-locking keeps the token.
    assert_eq!(la.try_lock(10_000, 0).await.expect("again"), Some(t1));
    assert_eq!(lb.try_lock(10_000, 0).await.expect("try b"), None);
    assert!(!lb.is_held_by_current_client());
    assert_eq!(lb.lease_rest_millis(), 0);
    let info = a
        .lock_info(0, "locks.l1")
        .await
        .expect("info")
        .data
        .expect("lock");
    assert_eq!(info.holder.map(|h| (h.0, h.1)), Some((a.client_id(), t1)));

    // b queues; a's unlock promotes it, and the push tells it well before a re-check.
    let lb2 = lb.clone();
    let waiter = tokio::spawn(async move { lb2.try_lock(10_000, 8_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    la.unlock().await.expect("unlock");
    assert!(!la.is_held_by_current_client());
    let t2 = waiter
        .await
        .expect("join")
        .expect("try b")
        .expect("b acquires");
    let waited = released.elapsed();
    assert!(t2 > t1, "token {t2} not above {t1}");
    assert!(
        waited < RECHECK_INTERVAL / 2,
        "promotion took {waited:?}: the push did not arrive"
    );
    assert!(lb.is_held_by_current_client());

    // Only the holder renews; a non-holder's unlock is refused without effect.
    assert!(matches!(
        kv_error(la.update_lease(1_000).await),
        KvError::NotOwner(_)
    ));
    lb.update_lease(20_000).await.expect("renew");
    assert!(lb.lease_rest_millis() > 19_000);
    la.unlock().await.expect("unlock when not held is a no-op");
    assert!(lb.is_held_by_current_client());

    // A lease that runs out promotes the next waiter, also by push.
    lb.update_lease(400).await.expect("short lease");
    let t3 = la
        .try_lock(10_000, 8_000)
        .await
        .expect("try a")
        .expect("a acquires");
    assert!(t3 > t2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !lb.is_held_by_current_client(),
        "b's lease is over by its count"
    );

    // A wait that times out returns None and leaves the queue.
    let started = Instant::now();
    assert_eq!(lb.try_lock(10_000, 300).await.expect("try b"), None);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < RECHECK_INTERVAL);
    let info = a
        .lock_info(0, "locks.l1")
        .await
        .expect("info")
        .data
        .expect("lock");
    assert_eq!(info.waiters, 0);

    // Bad arguments are refused before anything is sent.
    assert!(matches!(
        la.try_lock(0, 0).await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        a.create_lock(0, "bad..key"),
        Err(ClientError::InvalidArgument(_))
    ));
    // A lock on a value node is refused.
    a.put(0, "locks.v", b"x").await.expect("put");
    let lv = a.create_lock(0, "locks.v").expect("lock handle");
    assert!(matches!(
        kv_error(lv.try_lock(1_000, 0).await),
        KvError::NotLockNode(_)
    ));
    a.close().await;
    b.close().await;
    shutdown(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_updates_a_temporary_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, a, b) = two_clients(dir.path()).await;
    a.make_temp_dir(0, "svc", Duration::from_secs(30))
        .await
        .expect("temp dir");
    a.put_temp(0, "node1", b"up", Duration::from_millis(500))
        .await
        .expect("put temp");
    assert!(matches!(
        kv_error(b.update_ttl(0, "node1", Duration::from_secs(10)).await),
        KvError::NotOwner(_)
    ));
    assert!(matches!(
        kv_error(
            b.put_temp(0, "node1", b"mine", Duration::from_secs(10))
                .await
        ),
        KvError::NotOwner(_)
    ));
    assert!(matches!(
        kv_error(b.remove(0, "node1").await),
        KvError::NotOwner(_)
    ));
    assert!(matches!(
        kv_error(b.update_ttl(0, "svc", Duration::from_secs(10)).await),
        KvError::NotOwner(_)
    ));
    // The refused writes changed nothing: the value is a's and expires on time.
    let n = b.get(0, "node1").await.expect("get").data.expect("present");
    assert_eq!(&n.value[..], b"up");
    assert_eq!(n.ttl.map(|t| t.owner), Some(a.client_id()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get(0, "node1").await.expect("get").data.is_some() {
        assert!(
            Instant::now() < deadline,
            "the temporary value did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The owner re-arms its directory; a plain put cannot replace a temp node.
    a.update_ttl(0, "svc", Duration::from_secs(30))
        .await
        .expect("owner re-arms");
    assert!(matches!(
        kv_error(a.update_ttl(0, "svc", Duration::ZERO).await),
        KvError::InvalidTtl(_)
    ));
    a.close().await;
    b.close().await;
    shutdown(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_renewal_lock_holds_past_its_lease_and_releases_on_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, a, b) = two_clients(dir.path()).await;
    a.mkdir(0, "locks").await.expect("mkdir");
    let events = Arc::new(LockEvents::default());
    let auto = a
        .create_auto_renewal_lock(0, "locks.auto", Duration::from_millis(600), events.clone())
        .expect("auto lock");
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.0.lock().expect("events").is_empty() {
        assert!(Instant::now() < deadline, "never acquired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Three leases later it still holds: renewals work.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let lb = b.create_lock(0, "locks.auto").expect("lock b");
    assert_eq!(lb.try_lock(5_000, 0).await.expect("try b"), None);
    assert!(auto.lock().is_held_by_current_client());
    let ev = events.0.lock().expect("events").clone();
    assert_eq!(ev.len(), 1, "events: {ev:?}");
    let token = ev[0].1.expect("acquired");
    auto.close().await.expect("close");
    let t = lb
        .try_lock(5_000, 0)
        .await
        .expect("try b")
        .expect("b acquires");
    assert!(t > token);
    assert_eq!(
        events.0.lock().expect("events").len(),
        1,
        "close reports nothing"
    );
    a.close().await;
    b.close().await;
    shutdown(&nodes).await;
}
