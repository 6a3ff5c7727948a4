use super::*;
use crate::seq::SeqPolicy;
use dongting_net::{RpcError, Status};

#[test]
fn a_write_whose_attempt_may_have_run_keeps_its_sequence_number() {
    let refused = || RpcError::Remote {
        status: Status::NOT_RAFT_LEADER,
        message: "not the leader".into(),
        leader: None,
    };
    let lost = RpcError::Network {
        addr: "127.0.0.1:1".parse().expect("addr"),
        reason: "connection reset".into(),
        sent: true,
    };
    // Refusals alone: each retry may be renumbered.
    let p = SeqPolicy::default();
    assert!(p.after(&refused()));
    assert!(p.after(&refused()));
    // A lost connection after sending pins the number, also for later
    // refusals.
    assert!(!p.after(&lost));
    assert!(!p.after(&refused()));
    assert!(!p.after(&refused()));
}

#[tokio::test]
async fn a_dropped_write_releases_its_sequence_number() {
    // Nothing listens on this port: the write keeps retrying until the
    // caller gives up by dropping its future.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let client = KvClient::new(KvClientConfig::new(vec![addr]));
    let dropped = tokio::time::timeout(Duration::from_millis(50), client.put(0, "k", b"v")).await;
    assert!(
        dropped.is_err(),
        "the write cannot succeed without a server"
    );
    assert!(
        lock(&client.inner.in_flight_seqs).is_empty(),
        "the abandoned write still holds a sequence number"
    );
}

#[test]
fn a_config_no_call_could_use_is_refused() {
    let ok = KvClientConfig::new(vec!["127.0.0.1:5001".parse().expect("addr")]);
    assert_eq!(ok.validate(), Ok(()));
    let invalid = |cfg: KvClientConfig| match cfg.validate() {
        Err(ClientError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    assert!(invalid(KvClientConfig::new(Vec::new())).contains("no server"));
    let port0 = KvClientConfig::new(vec![
        "127.0.0.1:5001".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    ]);
    assert!(invalid(port0).contains("127.0.0.1:0"));
    let mut zero = ok.clone();
    zero.timeout = Duration::ZERO;
    assert!(invalid(zero).contains("timeout"));
}

#[test]
fn the_oldest_sequence_number_in_flight_follows_every_end() {
    let mut w = SeqWindow::new(7);
    let seqs: Vec<u64> = (0..5).map(|_| w.issue()).collect();
    assert_eq!(seqs, vec![7, 8, 9, 10, 11]);
    assert_eq!(w.oldest(), 7);
    w.end(9);
    w.end(9); // a second end of one number changes nothing
    assert_eq!(w.oldest(), 7);
    w.end(7);
    assert_eq!(w.oldest(), 8);
    w.end(8);
    assert_eq!(w.oldest(), 10, "9 ended before: the floor passes it");
    w.end(3); // below the window: ignored
    w.end(11);
    assert!(!w.is_empty());
    w.end(10);
    assert!(w.is_empty());
    assert_eq!(w.oldest(), 12, "with none in flight, the next to issue");
    assert_eq!(w.issue(), 12);
}
