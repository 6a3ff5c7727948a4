//! An fsync failure stops the group: the write it was covering is never
//! acknowledged as a success, later writes are refused, and status names the
//! error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dongting_kv::{Command, Op};
use dongting_net::{ClientConfig, RpcClient, Status};
use dongting_proto::service::{self as proto, ReadMode};
use dongting_proto::status::Role;
use dongting_server::Node;
use dongting_server::config::NodeConfig;
use dongting_store::fs::FaultyFs;

fn put_body(seq: u64, key: &'static [u8]) -> Bytes {
    let cmd = Command {
        client_id: 7,
        seq,
        acked_below: seq,
        leader_time_ms: 0,
        op: Op::Put {
            key: Bytes::from_static(key),
            value: Bytes::from_static(b"v"),
        },
    };
    proto::encode_kv_request(
        0,
        ReadMode::Linearizable,
        &dongting_kv::encode_command(&cmd),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_error_stops_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let text = format!(
        "node_id = 1\ndata_dir = \"{}\"\nservice_port = {}\nelect_timeout_ms = 300\n\
         heartbeat_interval_ms = 50\nservers = [ {{ id = 1, address = \"127.0.0.1:{}\" }} ]\n\
         [[groups]]\nid = 0\nmembers = [1]\n",
        dir.path().display(),
        ports[1],
        ports[0]
    );
    let fs = FaultyFs::new();
    let failpoints = fs.failpoints.clone();
    let node = Node::start_with_fs(
        NodeConfig::from_toml_str(&text, &[]).expect("config"),
        Some(Arc::new(fs)),
    )
    .await
    .expect("start");
    let svc = node.service_addr().expect("service");
    let client = RpcClient::new(ClientConfig::default());
    let t = Duration::from_secs(5);

    // Healthy: a put succeeds once the node leads.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .call(svc, proto::CMD_KV_WRITE, &put_body(1, b"a"), t)
            .await
        {
            Ok(r) => {
                let w = dongting_kv::decode_write_result(&r.body).expect("result");
                assert!(w.outcome.is_ok(), "{w:?}");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never served: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every later fsync fails.
    failpoints.syncs_until_failure.store(0, Ordering::SeqCst);
    let e = client
        .call(svc, proto::CMD_KV_WRITE, &put_body(2, b"b"), t)
        .await
        .expect_err("a write covered by a failed fsync must not succeed");
    assert_eq!(e.status(), Status::SYS_ERROR, "{e}");
    let e = client
        .call(svc, proto::CMD_KV_WRITE, &put_body(3, b"c"), t)
        .await
        .expect_err("a stopped group refuses writes");
    assert_eq!(e.status(), Status::RAFT_GROUP_STOPPED, "{e}");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let g = node.status().groups[0].clone();
        if g.role == Some(Role::Stopped) && !g.last_error.is_empty() {
            assert!(g.last_error.contains("stopped"), "{}", g.last_error);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status does not show the failure: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown(Duration::from_secs(1)).await;
    client.close(Duration::from_millis(100)).await;
}
