//! A write whose attempt may have reached a server never fails with an error
//! that says it was not executed: it succeeds (learned by resending the same
//! sequence number) or ends in UNKNOWN_OUTCOME. A one-node cluster behind a
//! TCP proxy that forwards a write to the server, swallows the answer and
//! then dies stands in for a leader killed right after it applied a write.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dongting_client::{ClientError, KvClient, KvClientConfig, UNKNOWN_OUTCOME};
use dongting_proto::status::Role;
use dongting_server::Node;
use dongting_server::config::NodeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

async fn one_node(dir: &std::path::Path) -> (Node, SocketAddr) {
    let ports = dongting_server::loopback::free_loopback_ports(2).expect("free ports");
    let text = format!(
        "node_id = 1\ndata_dir = \"{}\"\nservice_port = {}\nelect_timeout_ms = 500\n\
         heartbeat_interval_ms = 50\nservers = [{{ id = 1, address = \"127.0.0.1:{}\" }}]\n\
         [[groups]]\nid = 0\nmembers = [1]\n",
        dir.join("n1").display(),
        ports[1],
        ports[0],
    );
    let cfg = NodeConfig::from_toml_str(&text, &[]).expect("config");
    let node = Node::start(cfg).await.expect("start");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !node
        .status()
        .groups
        .iter()
        .any(|g| g.role == Some(Role::Leader) && g.ready)
    {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let svc = node.service_addr().expect("service address");
    (node, svc)
}

/// What the proxy does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwards both ways.
    Forward,
    /// Forwards requests, drops every answer.
    Swallow,
    /// Closes every connection, and each new one at once.
    Refuse,
}

/// A proxy to `target` whose behaviour the test switches ([`Mode`]).
struct Proxy {
    addr: SocketAddr,
    mode: tokio::sync::watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (mode, _) = tokio::sync::watch::channel(Mode::Forward);
        let modes = mode.clone();
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let mut mode = modes.subscribe();
                if *mode.borrow() == Mode::Refuse {
                    continue;
                }
                links.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let swallowing = mode.clone();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if *swallowing.borrow() == Mode::Forward
                                && cw.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    let refused = mode.wait_for(|m| *m == Mode::Refuse);
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = refused => {}
                    }
                });
            }
        });
        Proxy { addr, mode, task }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn client(servers: Vec<SocketAddr>, timeout: Duration) -> KvClient {
    let mut cfg = KvClientConfig::new(servers);
    cfg.timeout = timeout;
    KvClient::new(cfg)
}

/// Sends a put through the proxy, lets the server apply it while its answer
/// is swallowed, then kills the proxy; returns how the put ended.
async fn put_through_dying_proxy(
    proxy: &Proxy,
    c: &KvClient,
    key: &str,
) -> Result<dongting_client::Written, ClientError> {
    // The connection, its handshake and the leader are known before the
    // write: its first attempt goes out at once.
    c.get(0, "d").await.expect("get through the proxy");
    proxy.set(Mode::Swallow);
    let put = c.put(0, key, b"applied");
    tokio::pin!(put);
    tokio::select! {
        r = &mut put => panic!("the put ended while its answers were swallowed: {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    proxy.set(Mode::Refuse);
    put.await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_may_have_run_ends_in_success_or_unknown_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, svc) = one_node(dir.path()).await;
    let direct = client(vec![svc], Duration::from_secs(5));
    direct.mkdir(0, "d").await.expect("mkdir");

    // Only the proxy is known: once it dies, every later attempt is refused
    // before it is sent. The first attempt was applied, so the call must not
    // say "not executed".
    let proxy = Proxy::start(svc).await;
    let c = client(vec![proxy.addr], Duration::from_millis(1500));
    let e = put_through_dying_proxy(&proxy, &c, "d.lost")
        .await
        .expect_err("no server left to answer");
    assert!(
        matches!(e, ClientError::UnknownOutcome(_)),
        "a write that reached the server failed with {e:?}"
    );
    assert_eq!(e.code(), UNKNOWN_OUTCOME);
    assert!(!e.retryable(), "{e}");
    assert!(
        e.to_string().contains("NETWORK_ERROR"),
        "the message names the last failure: {e}"
    );
    let r = direct.get(0, "d.lost").await.expect("get");
    assert_eq!(
        r.data.map(|n| n.value.to_vec()),
        Some(b"applied".to_vec()),
        "the write did run: a retryable error would have lied"
    );

    // With the node's own address known too, the resend of the same
    // sequence number reaches it and learns the first attempt's result
    // from the session table: a success, applied once.
    let proxy = Proxy::start(svc).await;
    let c = client(vec![proxy.addr, svc], Duration::from_secs(5));
    let before = direct.get(0, "d").await.expect("get").index;
    let w = put_through_dying_proxy(&proxy, &c, "d.learned")
        .await
        .expect("the resend learns the outcome");
    assert!(w.index > before);
    let after = direct
        .get(0, "d.learned")
        .await
        .expect("get")
        .data
        .expect("present");
    assert_eq!(&after.value[..], b"applied");
    // Applied once, at the index reported: the resend did not make a second
    // entry that changed the key again.
    assert_eq!(after.update_index, w.index, "applied at the index reported");

    // A write none of whose attempts left the process stays retryable.
    let nowhere = client(vec![proxy.addr], Duration::from_millis(300));
    let e = nowhere
        .put(0, "d.never", b"v")
        .await
        .expect_err("no server");
    assert!(e.retryable(), "never sent, so safe to resend: {e:?}");
    assert!(direct.get(0, "d.never").await.expect("get").data.is_none());

    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_lock_whose_outcome_is_unknown_releases_what_it_may_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, svc) = one_node(dir.path()).await;
    let direct = client(vec![svc], Duration::from_secs(5));
    direct.mkdir(0, "d").await.expect("mkdir");

    let timeout = Duration::from_millis(1500);
    let proxy = Proxy::start(svc).await;
    let c = client(vec![proxy.addr], timeout);
    c.get(0, "d").await.expect("get through the proxy");
    let lock = c.create_lock(0, "d.lock").expect("lock handle");
    proxy.set(Mode::Swallow);
    let started = Instant::now();
    // A long lease: a hold left behind would last a minute.
    let attempt = lock.try_lock(60_000, 0);
    tokio::pin!(attempt);
    tokio::select! {
        r = &mut attempt => panic!("try_lock ended while its answers were swallowed: {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    // The connection is lost after the request went out, and every resend
    // is refused until the call's deadline has passed; then the proxy lets
    // the release (which has a deadline of its own) through.
    proxy.set(Mode::Refuse);
    let modes = proxy.mode.clone();
    let watcher = direct.clone();
    let me = c.client_id();
    let opener = tokio::spawn(async move {
        tokio::time::sleep_until((started + Duration::from_millis(900)).into()).await;
        let held_by = watcher
            .lock_info(0, "d.lock")
            .await
            .expect("lock info")
            .data
            .and_then(|v| v.holder)
            .map(|(holder, _, _)| holder);
        tokio::time::sleep_until((started + timeout + Duration::from_millis(100)).into()).await;
        modes.send_replace(Mode::Forward);
        held_by
    });
    let e = attempt.await.expect_err("no answer within the deadline");
    assert!(
        matches!(e, ClientError::UnknownOutcome(_)),
        "a try_lock that reached the server failed with {e:?}"
    );
    assert!(!e.retryable());
    assert_eq!(
        opener.await.expect("opener"),
        Some(me),
        "the try_lock was applied: this client held the lock before the release"
    );
    assert!(e.to_string().contains("lock released"), "{e}");
    let info = direct.lock_info(0, "d.lock").await.expect("lock info");
    assert!(
        info.data.and_then(|v| v.holder).is_none(),
        "the hold was released before try_lock returned"
    );
    assert!(!lock.is_held_by_current_client());
    let other = direct.create_lock(0, "d.lock").expect("lock handle");
    assert!(
        other.try_lock(1_000, 0).await.expect("try_lock").is_some(),
        "another client gets the lock at once"
    );
    drop(node);
}
