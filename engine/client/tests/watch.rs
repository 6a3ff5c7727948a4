//! Watch streams against an in-process 3-node cluster: heartbeats advance a
//! quiet stream's position, a root watch sees the whole tree, the blocking
//! wrapper, close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dongting_client::{BlockingKvClient, ClientError, KvClient, KvClientConfig, WatchItem};
use dongting_proto::status::Role;
use dongting_server::Node;
use dongting_server::config::NodeConfig;

async fn cluster(dir: &std::path::Path) -> (Vec<Node>, Vec<SocketAddr>) {
    let ports = dongting_server::loopback::free_loopback_ports(6).expect("free ports");
    let servers: Vec<String> = (0..3)
        .map(|i| format!("{{ id = {}, address = \"127.0.0.1:{}\" }}", i + 1, ports[i]))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let text = format!(
            "node_id = {}\ndata_dir = \"{}\"\nservice_port = {}\nelect_timeout_ms = 500\n\
             heartbeat_interval_ms = 50\nwatch_heartbeat_ms = 200\nservers = [{}]\n\
             [[groups]]\nid = 0\nmembers = [1, 2, 3]\n",
            i + 1,
            dir.join(format!("n{}", i + 1)).display(),
            ports[3 + i],
            servers.join(", ")
        );
        let cfg = NodeConfig::from_toml_str(&text, &[]).expect("config");
        nodes.push(Node::start(cfg).await.expect("start"));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !nodes
        .iter()
        .any(|n| n.status().groups[0].role == Some(Role::Leader) && n.status().groups[0].ready)
    {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let svc = nodes
        .iter()
        .map(|n| n.service_addr().expect("service"))
        .collect();
    (nodes, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_advance_a_quiet_watch_and_the_root_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, svc) = cluster(dir.path()).await;
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

#[test]
fn the_blocking_wrapper_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (nodes, svc) = rt.block_on(cluster(dir.path()));
    let c = BlockingKvClient::new(KvClientConfig::new(svc)).expect("client");
    let made = c.mkdir(0, "cfg").expect("mkdir").index;
    // From the mkdir: a follower serving the watch may not have applied it
    // yet, and "from now" would then include it.
    let mut w = c.watch(0, &[b"cfg"], made).expect("watch");
    assert_eq!(w.next(Duration::from_millis(100)).expect("next"), None);
    let put = c.put(0, "cfg.x", b"1").expect("put").index;
    let item = w
        .next(Duration::from_secs(5))
        .expect("next")
        .expect("an item");
    assert!(matches!(item, WatchItem::Event(ref e) if e.index == put && &e.key[..] == b"cfg.x"));
    assert!(w.last_index() >= put);
    w.close();
    c.close();
    rt.block_on(async {
        for n in &nodes {
            n.shutdown(Duration::from_secs(1)).await;
        }
    });
}
