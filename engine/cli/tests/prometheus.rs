//! A real Prometheus scraping a 3-node cluster of `dongting server`
//! processes that host two groups: every node reports a leader of every
//! group, and after the leader of group 0 is killed the survivors' leader
//! change counters rise and their `/readyz` answers 200 again.
//!
//! Needs the `prometheus` binary on PATH: `make prometheus-test` installs it
//! (Debian's `prometheus` package) and runs this.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

/// How long Prometheus gets to see a state of the cluster.
const SCRAPE_WAIT: Duration = Duration::from_secs(60);

/// A `prometheus` child process scraping the nodes; killed (and its data
/// removed) when dropped, also when the test panics.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping each of
    /// `targets` every second as job `dongting`.
    fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: dongting\n    static_configs:\n      \
                 - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_ports(1)[0]));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (make prometheus-test installs it)");
        Prometheus { child, addr, dir }
    }

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector `query` evaluates to now, as (instance, group)
    /// to value; `None` while Prometheus does not answer yet.
    fn query(&self, query: &str) -> Option<BTreeMap<(String, String), f64>> {
        let (code, body) = get(self.addr, &format!("/api/v1/query?query={}", encode(query)))?;
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).expect("query answer is JSON");
        assert_eq!(v["status"], "success", "{body}");
        let mut out = BTreeMap::new();
        for r in v["data"]["result"].as_array().expect("a vector") {
            let label = |n: &str| r["metric"][n].as_str().unwrap_or_default().to_string();
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a sample value");
            out.insert((label("instance"), label("group")), value);
        }
        Some(out)
    }

    /// Polls `query` until `done` holds for its result, for at most
    /// [`SCRAPE_WAIT`]; returns the result.
    fn wait_for(
        &self,
        query: &str,
        done: impl Fn(&BTreeMap<(String, String), f64>) -> bool,
    ) -> BTreeMap<(String, String), f64> {
        let deadline = Instant::now() + SCRAPE_WAIT;
        let mut last = None;
        loop {
            if let Some(r) = self.query(query) {
                if done(&r) {
                    return r;
                }
                last = Some(r);
            }
            assert!(
                Instant::now() < deadline,
                "{query}: last {last:?}\nprometheus log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encodes `s` for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET path` over HTTP/1.0 (so that the answer is neither chunked nor kept
/// alive): the status code and the body, `None` when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((code, body.to_string()))
}

/// The node (1-based) that node `id`'s `/status` names leader of `group`.
fn leader_of(cluster: &Cluster, id: usize, group: u64) -> Option<usize> {
    let (code, body) = get(cluster.http[id - 1], "/status")?;
    assert_eq!(code, 200, "{body}");
    let st: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
    let g = st["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"].as_u64() == Some(group))?;
    let leader = g["leader"].as_u64()?;
    (leader != 0).then(|| usize::try_from(leader).expect("node id"))
}

#[test]
#[ignore = "needs the prometheus binary: make prometheus-test"]
fn prometheus_scrapes_leaders_and_a_failover() {
    let began = Instant::now();
    let mut cluster = Cluster::start_with_http(BIN, "[[groups]]\nid = 1\nmembers = [1, 2, 3]\n");
    let prom = Prometheus::start(&cluster.http);
    let instances: Vec<String> = cluster.http.iter().map(ToString::to_string).collect();

    // Every node reports a leader of both groups.
    let has_leader = prom.wait_for("dongting_group_has_leader", |r| {
        r.len() == 6 && r.values().all(|&v| v == 1.0)
    });
    for i in &instances {
        for g in ["0", "1"] {
            assert_eq!(has_leader.get(&(i.clone(), g.into())), Some(&1.0), "{i}");
        }
    }
    let steady = began.elapsed();

    // Kill the leader of group 0.
    let old = (1..=3)
        .find_map(|id| leader_of(&cluster, id, 0))
        .expect("a leader of group 0");
    let survivors: Vec<usize> = (1..=3).filter(|&id| id != old).collect();
    let changes = "dongting_group_leader_changes_total{group=\"0\"}";
    let before = prom.wait_for(changes, |r| r.len() == 3);
    let pid = cluster.procs[old - 1].as_ref().expect("running").child.id();
    send_signal(pid, "-KILL", false);
    drop(cluster.procs[old - 1].take());
    let killed = Instant::now();

    // The survivors elect a new leader and are ready again. (Until they miss
    // the old leader's heartbeats they still name it and stay ready.)
    for &id in &survivors {
        let deadline = Instant::now() + SCRAPE_WAIT;
        loop {
            let new = leader_of(&cluster, id, 0).filter(|&l| l != old);
            match get(cluster.http[id - 1], "/readyz") {
                Some((200, body)) if new.is_some() => {
                    assert!(body.contains("\"ready\":true"), "{body}");
                    break;
                }
                Some((200 | 503, _)) | None => {}
                Some((code, body)) => panic!("/readyz of node {id}: {code} {body}"),
            }
            assert!(
                Instant::now() < deadline,
                "node {id} never ready under a new leader"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ready = killed.elapsed();

    // Prometheus sees each survivor's leader change counter rise, and the
    // killed node down.
    let after = prom.wait_for(changes, |r| {
        survivors.iter().all(|&id| {
            let key = (instances[id - 1].clone(), "0".to_string());
            match (r.get(&key), before.get(&key)) {
                (Some(a), Some(b)) => a > b,
                _ => false,
            }
        })
    });
    let up = prom.wait_for("up", |r| {
        r.get(&(instances[old - 1].clone(), String::new())) == Some(&0.0)
    });
    for &id in &survivors {
        assert_eq!(
            up.get(&(instances[id - 1].clone(), String::new())),
            Some(&1.0),
            "node {id} is scraped"
        );
    }
    eprintln!(
        "prometheus test: leaders scraped after {steady:?}, survivors ready {ready:?} after the kill, \
         counters risen after {:?}; leader changes before {before:?}, after {after:?}; total {:?}",
        killed.elapsed(),
        began.elapsed()
    );
}
