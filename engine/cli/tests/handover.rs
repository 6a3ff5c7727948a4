//! Leadership hand-over on shutdown, with `dongting server` processes whose
//! election timeout is 10 s: only a hand-over lets writes go on within a
//! second when the leader stops. SIGTERM of the leader under sequential
//! puts, a rolling restart of the three nodes under sequential puts, and a
//! single-node group that stops without waiting for a hand-over.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use dongting_testkit::{Timing, node_toml};

/// Elections so slow that only a hand-over keeps writes going.
const SLOW: Timing = Timing {
    elect_timeout_ms: 10_000,
    heartbeat_interval_ms: 500,
};

/// Three servers with [`SLOW`] elections and `top` added to each file.
fn start_slow(top: &str) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(6);
    let (rep, svc) = ports.split_at(3);
    for id in 1..=3 {
        let text = node_toml(id, rep, svc[id - 1], &format!("node{id}"), &SLOW, None, top);
        std::fs::write(dir.path().join(format!("node{id}.toml")), text).expect("write config");
    }
    let mut c = Cluster::of_files(BIN, dir, rep, svc);
    c.spawn_all();
    c
}

/// What a writer of sequential puts saw.
#[derive(Debug, Default)]
struct Writes {
    done: u64,
    failed: Vec<String>,
    /// The longest time between two completed puts (or the start and the
    /// first), in milliseconds.
    longest_pause_ms: u128,
}

impl Writes {
    /// Prints what the writer saw under `label` (`--nocapture` shows it).
    fn report(&self, label: &str) {
        eprintln!(
            "{label}: {} puts, {} failed, longest pause {} ms",
            self.done,
            self.failed.len(),
            self.longest_pause_ms
        );
    }

    /// Asserts that no put failed and none waited 1 s or more.
    fn assert_no_failure_nor_long_pause(&self) {
        assert!(self.failed.is_empty(), "{:?}", self.failed);
        assert!(
            self.longest_pause_ms < 1000,
            "longest pause {} ms",
            self.longest_pause_ms
        );
    }
}

/// Puts `w.N` one after another until `stop` is set.
fn spawn_writer(c: KvClient, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Writes> {
    tokio::spawn(async move {
        let mut w = Writes::default();
        let mut last = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            match c.put(0, &format!("w.{i}"), i.to_string().as_bytes()).await {
                Ok(_) => w.done += 1,
                Err(e) => w.failed.push(format!("put {i}: {e}")),
            }
            let now = Instant::now();
            w.longest_pause_ms = w.longest_pause_ms.max(now.duration_since(last).as_millis());
            last = now;
        }
        w
    })
}

/// Node `id`'s view of group 0, `None` when it does not answer.
async fn group0(
    cluster: &Cluster,
    c: &KvClient,
    id: usize,
) -> Option<dongting_proto::status::GroupStatus> {
    cluster
        .status(c, id)
        .await
        .and_then(|s| s.groups.into_iter().find(|g| g.group_id == 0))
}

/// SIGTERM to node `id`, and waits until it exited successfully.
fn stop_node(cluster: &mut Cluster, id: usize) -> Proc {
    let mut p = cluster.procs[id - 1].take().expect("running");
    send_signal(p.child.id(), "-TERM", false);
    let status = p.child.wait().expect("wait");
    assert!(
        status.success(),
        "exit {status:?}: {}",
        p.log.lock().expect("log")
    );
    p
}

/// Waits (up to 10 s) until the log of `p` shows `text`: the pipe may lag the exit.
fn wait_logged(p: &Proc, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.logged(text) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs a rolling restart of the three nodes under sequential puts and
/// returns what the writer saw.
async fn rolling_restart(top: &str) -> Writes {
    let mut cluster = start_slow(top);
    let c = cluster.client();
    cluster.leader(&c).await;
    c.mkdir(0, "w").await.expect("mkdir");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(c.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in 1..=3 {
        stop_node(&mut cluster, id);
        cluster.procs[id - 1] = Some(spawn_server(BIN, &cluster.config(id)));
        // Caught up: it follows a leader and has applied what that leader
        // had committed when it was asked.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let leader = cluster.leader(&c).await;
            if let (Some(l), Some(me)) = (
                group0(&cluster, &c, leader).await,
                group0(&cluster, &c, id).await,
            ) && me.leader_id != 0
                && me.applied_index >= l.commit_index
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {id} did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_over_without_a_failed_put() {
    let mut cluster = start_slow("");
    let c = cluster.client();
    let old = cluster.leader(&c).await;
    c.mkdir(0, "w").await.expect("mkdir");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(c.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term_at = Instant::now();
    let p = stop_node(&mut cluster, old);
    let new = cluster.leader(&c).await;
    let elected_after = term_at.elapsed();
    assert_ne!(new, old);
    // An election would take 10 s at least.
    assert!(
        elected_after < Duration::from_secs(5),
        "new leader after {elected_after:?}"
    );
    assert!(!writer.is_finished(), "the writer stopped early");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let w = writer.await.expect("writer");
    w.report(&format!(
        "hand-over (new leader {elected_after:?} after SIGTERM)"
    ));
    w.assert_no_failure_nor_long_pause();
    assert!(w.done > 10, "{w:?}");
    assert!(
        wait_logged(&p, "leadership handed over on shutdown"),
        "{}",
        p.log.lock().expect("log")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_puts_loses_nothing_and_pauses_under_a_second() {
    let w = rolling_restart("").await;
    w.report("rolling restart");
    w.assert_no_failure_nor_long_pause();
}

/// The same rolling restart with the hand-over off, for BENCHMARKS.md
/// (`cargo test -p dongting-cli --test handover -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: about a minute of elections"]
async fn rolling_restart_without_hand_over_report() {
    let w = rolling_restart("shutdown_transfer_timeout_ms = 0").await;
    w.report("rolling restart without hand-over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_group_stops_without_waiting_for_a_hand_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(2);
    let text = format!(
        "node_id = 1\ndata_dir = \"{}\"\nservice_port = {}\nelect_timeout_ms = 3000\n\
         heartbeat_interval_ms = 300\nshutdown_transfer_timeout_ms = 2900\n\
         servers = [ {{ id = 1, address = \"127.0.0.1:{}\" }} ]\n[[groups]]\nid = 0\nmembers = [1]\n",
        dir.path().join("n1").display(),
        ports[1],
        ports[0]
    );
    let cfg = dongting_server::config::NodeConfig::from_toml_str(&text, &[]).expect("config");
    let node = dongting_server::Node::start(cfg).await.expect("start");
    let mut kc = KvClientConfig::new(vec![node.service_addr().expect("service")]);
    kc.timeout = Duration::from_secs(15);
    let c = KvClient::new(kc);
    c.put(0, "k", b"v").await.expect("put");
    assert_eq!(node.status().groups[0].role, Some(Role::Leader));
    let t = Instant::now();
    node.shutdown(Duration::from_secs(1)).await;
    let took = t.elapsed();
    c.close().await;
    assert!(took < Duration::from_millis(2000), "shutdown took {took:?}");
}
