//! Test support for the suites that run real nodes on loopback: a 3-node
//! cluster inside the test process ([`start_three`]) or as `dongting server`
//! processes ([`Cluster`], [`spawn_server`]), `dongting dev` ([`start_dev`]),
//! and the configuration text both use ([`node_toml`]).
//!
//! The client's own tests against real nodes live in this crate's `tests/`,
//! so that `dongting-client` builds without the node runtime.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dongting_client::{ClientError, KvClient, KvClientConfig, LockListener};
use dongting_proto::status::{NodeStatus, Role};
use dongting_server::Node;
use dongting_server::config::NodeConfig;

/// `n` free loopback ports (below the ephemeral range, see
/// `dongting_server::loopback`).
pub fn free_ports(n: usize) -> Vec<u16> {
    dongting_server::loopback::free_loopback_ports(n).expect("free ports")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How a test cluster's nodes are configured.
#[derive(Debug, Clone)]
pub struct Timing {
    /// `elect_timeout_ms`.
    pub elect_timeout_ms: u64,
    /// `heartbeat_interval_ms`.
    pub heartbeat_interval_ms: u64,
}

/// Fast elections for in-process clusters.
pub const FAST: Timing = Timing {
    elect_timeout_ms: 500,
    heartbeat_interval_ms: 50,
};

/// Elections for clusters of processes, which start one after another.
pub const PROCESS: Timing = Timing {
    elect_timeout_ms: 1000,
    heartbeat_interval_ms: 100,
};

/// The TOML of node `id` (1-based) of a cluster whose replicate ports are
/// `rep` (node `i + 1` on `rep[i]`), hosting group 0 on nodes 1 to 3.
/// `servers` replaces the generated `servers` list when given; `extra` is
/// added before the `[[groups]]` table (top-level keys or whole tables).
pub fn node_toml(
    id: usize,
    rep: &[u16],
    svc: u16,
    data_dir: &str,
    timing: &Timing,
    servers: Option<&str>,
    extra: &str,
) -> String {
    let generated: Vec<String> = rep
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  {{ id = {}, address = \"127.0.0.1:{p}\" }},", i + 1))
        .collect();
    let servers = servers.map_or_else(|| generated.join("\n"), str::to_string);
    format!(
        "node_id = {id}\ndata_dir = \"{data_dir}\"\nservice_port = {svc}\n\
         elect_timeout_ms = {}\nheartbeat_interval_ms = {}\nservers = [\n{servers}\n]\n\
         {extra}\n[[groups]]\nid = 0\nmembers = [1, 2, 3]\n",
        timing.elect_timeout_ms, timing.heartbeat_interval_ms
    )
}

/// Starts three nodes in this process hosting group 0 ([`FAST`] elections,
/// `extra` top-level configuration added to each, data under `dir/nN`),
/// waits until the group has a ready leader, and returns the nodes (node
/// `i + 1` at `i`) and their service addresses.
pub async fn start_three(dir: &Path, extra: &str) -> (Vec<Node>, Vec<SocketAddr>) {
    let ports = free_ports(6);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let data = dir.join(format!("n{}", i + 1));
        let text = node_toml(
            i + 1,
            &ports[..3],
            ports[3 + i],
            &data.display().to_string(),
            &FAST,
            None,
            extra,
        );
        let cfg = NodeConfig::from_toml_str(&text, &[]).expect("config");
        nodes.push(Node::start(cfg).await.expect("start"));
    }
    let service = nodes
        .iter()
        .map(|n| n.service_addr().expect("service"))
        .collect();
    leader_and_follower(&nodes).await;
    (nodes, service)
}

/// Waits for a ready leader of group 0 and returns it with a follower that
/// knows it (indexes in `nodes`).
pub async fn leader_and_follower(nodes: &[Node]) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let groups: Vec<_> = nodes.iter().map(|n| n.status().groups[0].clone()).collect();
        if let Some(l) = groups
            .iter()
            .position(|g| g.role == Some(Role::Leader) && g.ready)
        {
            let f = groups
                .iter()
                .position(|g| g.role == Some(Role::Follower) && g.leader_id != 0)
                .unwrap_or((l + 1) % groups.len());
            return (l, f);
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops every node.
pub async fn shutdown(nodes: &[Node]) {
    for n in nodes {
        n.shutdown(Duration::from_secs(1)).await;
    }
}

/// A child process whose output is collected into `log` by threads of its
/// own; killed when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Everything it wrote to stdout and stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Whether its output so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().expect("log").contains(text)
    }
}

/// Starts `bin --threads 2 server --config path` at log level info and waits
/// until it listens.
pub fn spawn_server(bin: &str, path: &Path) -> Proc {
    let mut child = Command::new(bin)
        .args(["--threads", "2", "server", "--config"])
        .arg(path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let log = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    for r in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                log.lock().expect("log").push_str(&(line + "\n"));
            }
        });
    }
    let p = Proc { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.logged("started: replicate") {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            p.log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// The addresses `dongting dev` prints: service and replicate lists
/// (comma-separated) and each node's HTTP address (`host:port`).
pub struct DevAddrs {
    /// Service addresses, comma-separated.
    pub service: String,
    /// Replicate addresses, comma-separated.
    pub replicate: String,
    /// Each node's HTTP address.
    pub http: Vec<String>,
}

/// Starts `bin dev --dir DIR` and reads the addresses it prints; its later
/// output is drained on a thread of its own.
pub fn start_dev(bin: &str, dir: &Path) -> (Child, DevAddrs) {
    let mut child = Command::new(bin)
        .args(["dev", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addrs = DevAddrs {
        service: String::new(),
        replicate: String::new(),
        http: Vec::new(),
    };
    for line in lines.by_ref() {
        let line = line.expect("line");
        let line = line.trim();
        if let Some(s) = line.strip_prefix("service (clients):") {
            addrs.service = s.trim().to_string();
        } else if let Some(s) = line.strip_prefix("replicate (admin):") {
            addrs.replicate = s.trim().to_string();
        } else if let Some(s) = line.strip_prefix("http (metrics, health):") {
            addrs.http = s
                .split_whitespace()
                .map(|u| u.trim_start_matches("http://").to_string())
                .collect();
        } else if line.starts_with("Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (child, addrs)
}

/// Three `dongting server` processes hosting group 0, configured by files
/// `nodeN.toml` in a temporary directory (data in `nodeN/` beside them,
/// values up to 4 KiB).
pub struct Cluster {
    /// The CLI binary.
    pub bin: String,
    /// Holds the configuration files and data.
    pub dir: tempfile::TempDir,
    /// Service addresses, node `i + 1` at `i`.
    pub service: Vec<SocketAddr>,
    /// Replicate addresses.
    pub replicate: Vec<SocketAddr>,
    /// HTTP addresses (`http_port`), node `i + 1` at `i`; empty unless
    /// started by [`Cluster::start_with_http`].
    pub http: Vec<SocketAddr>,
    /// The processes; `None` where a test stopped one.
    pub procs: Vec<Option<Proc>>,
}

/// The configuration of node `id` of a [`Cluster`].
pub fn cluster_toml(id: usize, rep: &[u16], svc: u16, servers: Option<&str>) -> String {
    cluster_toml_with(id, rep, svc, servers, "")
}

/// [`cluster_toml`] with more top-level keys (`top`).
pub fn cluster_toml_with(
    id: usize,
    rep: &[u16],
    svc: u16,
    servers: Option<&str>,
    top: &str,
) -> String {
    node_toml(
        id,
        rep,
        svc,
        &format!("node{id}"),
        &PROCESS,
        servers,
        &format!("{top}\n[limits]\nmax_value_bytes = 4096"),
    )
}

impl Cluster {
    /// Writes the three configurations and starts the processes.
    pub fn start(bin: &str) -> Cluster {
        Cluster::start_with(bin, "")
    }

    /// [`Cluster::start`] with more top-level configuration keys (`top`)
    /// for every node.
    pub fn start_with(bin: &str, top: &str) -> Cluster {
        Cluster::launch(bin, &|_| top.to_string(), false)
    }

    /// [`Cluster::start`] with more configuration for node `id` (1-based)
    /// given by `top(id)`: top-level keys, then whole tables; `http`: as
    /// [`Cluster::start_with_http`].
    pub fn start_with_each(bin: &str, top: &dyn Fn(usize) -> String, http: bool) -> Cluster {
        Cluster::launch(bin, top, http)
    }

    /// [`Cluster::start_with`] with an HTTP port (`http_port`, free ports
    /// picked with the others) on every node, listed in [`Cluster::http`].
    pub fn start_with_http(bin: &str, top: &str) -> Cluster {
        Cluster::launch(bin, &|_| top.to_string(), true)
    }

    fn launch(bin: &str, top: &dyn Fn(usize) -> String, http: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(if http { 9 } else { 6 });
        let rep = &ports[..3];
        let svc = &ports[3..6];
        let web = &ports[6..];
        for id in 1..=3 {
            let top = match web.get(id - 1) {
                Some(p) => format!("http_port = {p}\n{}", top(id)),
                None => top(id),
            };
            std::fs::write(
                dir.path().join(format!("node{id}.toml")),
                cluster_toml_with(id, rep, svc[id - 1], None, &top),
            )
            .expect("write config");
        }
        let mut c = Cluster::of_files(bin, dir, rep, svc);
        c.http = web.iter().map(|p| loopback(*p)).collect();
        c.spawn_all();
        c
    }

    /// The cluster whose configuration files (`nodeN.toml`) a test wrote into
    /// `dir`, on loopback replicate ports `rep` and service ports `svc` (node
    /// `i + 1` at `i`); no process is started.
    pub fn of_files(bin: &str, dir: tempfile::TempDir, rep: &[u16], svc: &[u16]) -> Cluster {
        Cluster {
            bin: bin.to_string(),
            service: svc.iter().map(|p| loopback(*p)).collect(),
            replicate: rep.iter().map(|p| loopback(*p)).collect(),
            http: Vec::new(),
            procs: Vec::new(),
            dir,
        }
    }

    /// Starts a process for every node of [`Cluster::service`], from its file.
    pub fn spawn_all(&mut self) {
        for id in 1..=self.service.len() {
            let p = spawn_server(&self.bin, &self.config(id));
            self.procs.push(Some(p));
        }
    }

    /// Node `id`'s configuration file.
    pub fn config(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("node{id}.toml"))
    }

    /// A client of every node (10 s timeout).
    pub fn client(&self) -> KvClient {
        let mut cfg = KvClientConfig::new(self.service.clone());
        cfg.timeout = Duration::from_secs(10);
        KvClient::new(cfg)
    }

    /// Node `id`'s status, `None` when it does not answer.
    pub async fn status(&self, c: &KvClient, id: usize) -> Option<NodeStatus> {
        c.server_status(self.service[id - 1]).await.ok()
    }

    /// Waits until some running node leads group 0 and returns its id.
    pub async fn leader(&self, c: &KvClient) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for id in 1..=3 {
                if self.procs[id - 1].is_none() {
                    continue;
                }
                if let Some(s) = self.status(c, id).await
                    && s.groups
                        .iter()
                        .any(|g| g.role == Some(Role::Leader) && g.ready)
                {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `bin admin --servers <replicate addresses> args...`: whether it
    /// succeeded and its stdout and stderr.
    pub fn admin(&self, args: &[&str]) -> (bool, String) {
        run_admin(&self.bin, &self.replicate, args)
    }

    /// `bin kv --servers <service addresses> --timeout-ms 10000`, for the
    /// caller to add a subcommand to.
    pub fn kv_command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.args([
            "kv",
            "--servers",
            &join(&self.service),
            "--timeout-ms",
            "10000",
        ]);
        c
    }
}

/// `addrs` as a `--servers` list: `host:port,host:port,...`.
pub fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `bin admin --servers <servers> args...`: whether it succeeded and its
/// stdout and stderr.
pub fn run_admin(bin: &str, servers: &[SocketAddr], args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
        .args(["admin", "--servers", &join(servers)])
        .args(args)
        .output()
        .expect("run admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Sends `signal` (e.g. `-TERM`) to the process `pid`, or to its process
/// group when `group` is set, and asserts that `kill` succeeded.
pub fn send_signal(pid: u32, signal: &str, group: bool) {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let ok = Command::new("kill")
        .args([signal, "--", &target])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {signal} {target} failed");
}

/// The DtKV error name of a client error, if it is one.
pub fn kv_code(e: &ClientError) -> Option<&'static str> {
    match e {
        ClientError::Kv { error, .. } => Some(error.name()),
        _ => None,
    }
}

/// A lock listener that records each callback with its time: `Some(token)`
/// for an acquisition, `None` for a loss.
#[derive(Default)]
pub struct LockEvents(pub Mutex<Vec<(Instant, Option<u64>)>>);

impl LockListener for LockEvents {
    fn on_acquired(&self, token: u64) {
        self.0
            .lock()
            .expect("events")
            .push((Instant::now(), Some(token)));
    }
    fn on_lost(&self) {
        self.0.lock().expect("events").push((Instant::now(), None));
    }
}
