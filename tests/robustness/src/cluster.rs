//! A cluster of real `dongting server` processes on loopback, with a
//! [`LinkProxy`] on every directed link between them.
//!
//! Every node's file has the same `servers` list (so the config check between
//! peers passes) and a node-local `[dial]` table that sends its connection to
//! each peer through the proxy of that link.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dongting_client::{KvClient, KvClientConfig};
use dongting_proto::status::{NodeStatus, Role};

use crate::proxy::{LinkMode, LinkProxy};

/// Settings of the cluster's nodes.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of nodes (3 or 5 in practice).
    pub nodes: usize,
    /// The `dongting` binary.
    pub binary: PathBuf,
    /// Where data, configs and logs go.
    pub dir: PathBuf,
    /// Election timeout of every node.
    pub elect_timeout_ms: u64,
    /// Automatic snapshot interval (0: never).
    pub snapshot_seconds: u64,
    /// Extra environment for every server process (failpoints).
    pub env: Vec<(String, String)>,
}

/// One node: its process while it runs.
#[derive(Debug)]
pub struct NodeProc {
    /// Node id, from 1.
    pub id: usize,
    /// The process, when running.
    pub child: Option<Child>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
}

/// The running cluster.
pub struct Cluster {
    /// Its settings.
    pub spec: ClusterSpec,
    /// Replicate address of each node (index = id - 1).
    pub replicate: Vec<SocketAddr>,
    /// Service address of each node.
    pub service: Vec<SocketAddr>,
    /// Proxies: `links[i][j]` carries node i+1's connections to node j+1.
    pub links: Vec<Vec<Option<LinkProxy>>>,
    /// The nodes.
    pub procs: Vec<NodeProc>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.spec.nodes)
            .field("dir", &self.spec.dir)
            .finish()
    }
}

impl Cluster {
    /// Writes every node's config, starts the proxies and the processes, and
    /// waits until some node leads group 0.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        let n = spec.nodes;
        let ports = dongting_server::loopback::free_loopback_ports(2 * n + n * n)
            .map_err(|e| format!("no free ports: {e}"))?;
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let replicate: Vec<SocketAddr> = ports[..n].iter().map(|&p| addr(p)).collect();
        let service: Vec<SocketAddr> = ports[n..2 * n].iter().map(|&p| addr(p)).collect();
        let mut links = Vec::new();
        for i in 0..n {
            let mut row = Vec::new();
            for j in 0..n {
                if i == j {
                    row.push(None);
                    continue;
                }
                let listen = addr(ports[2 * n + i * n + j]);
                let p = LinkProxy::start(listen, replicate[j])
                    .await
                    .map_err(|e| format!("proxy {}->{}: {e}", i + 1, j + 1))?;
                row.push(Some(p));
            }
            links.push(row);
        }
        std::fs::create_dir_all(&spec.dir)
            .map_err(|e| format!("cannot create {}: {e}", spec.dir.display()))?;
        let mut c = Cluster {
            replicate,
            service,
            links,
            procs: (1..=n)
                .map(|id| NodeProc {
                    id,
                    child: None,
                    paused: false,
                })
                .collect(),
            spec,
        };
        for id in 1..=n {
            std::fs::write(c.config_path(id), c.config_text(id))
                .map_err(|e| format!("cannot write config of node {id}: {e}"))?;
        }
        for id in 1..=n {
            c.spawn(id)?;
        }
        let client = c.client(Duration::from_secs(2));
        c.leader(&client, Duration::from_secs(60))
            .await
            .ok_or("no leader elected within 60 s")?;
        Ok(c)
    }

    fn config_path(&self, id: usize) -> PathBuf {
        self.spec.dir.join(format!("node{id}.toml"))
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.spec.dir.join(format!("node{id}"))
    }

    fn config_text(&self, id: usize) -> String {
        let n = self.spec.nodes;
        let servers: Vec<String> = self
            .replicate
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  {{ id = {}, address = \"{a}\" }},", i + 1))
            .collect();
        let members: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let dial: Vec<String> = (1..=n)
            .filter(|&j| j != id)
            .map(|j| {
                let p = self.links[id - 1][j - 1].as_ref().map(|p| p.listen);
                format!("{j} = \"{}\"", p.map(|a| a.to_string()).unwrap_or_default())
            })
            .collect();
        let e = self.spec.elect_timeout_ms;
        format!(
            "node_id = {id}\ndata_dir = \"node{id}\"\nservice_port = {svc}\n\
             elect_timeout_ms = {e}\nheartbeat_interval_ms = {hb}\nrpc_timeout_ms = {e}\n\
             connect_timeout_ms = {ct}\nservers = [\n{servers}\n]\n\
             [group_defaults]\nsave_snapshot_seconds = {snap}\nauto_delete_log_delay_seconds = 0\n\
             [limits]\nmax_value_bytes = 4096\n\
             [dial]\n{dial}\n\
             [[groups]]\nid = 0\nmembers = [{members}]\n",
            svc = self.service[id - 1].port(),
            hb = (e / 10).max(20),
            ct = (e / 2).max(100),
            servers = servers.join("\n"),
            snap = self.spec.snapshot_seconds,
            dial = dial.join("\n"),
            members = members.join(", "),
        )
    }

    /// Starts node `id`'s process (output appended to `node<id>.log`).
    pub fn spawn(&mut self, id: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.dir.join(format!("node{id}.log")))
            .map_err(|e| format!("node {id} log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.spec.binary);
        cmd.args(["--threads", "2", "server", "--config"])
            .arg(self.config_path(id))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {} (build it with `cargo build -p dongting-cli`, or pass --binary): {e}",
                self.spec.binary.display()
            )
        })?;
        // For stopping the node by hand should the runner itself be killed.
        let _ = std::fs::write(
            self.spec.dir.join(format!("node{id}.pid")),
            format!("{}\n", child.id()),
        );
        let p = &mut self.procs[id - 1];
        p.child = Some(child);
        p.paused = false;
        Ok(())
    }

    /// kill -9 of node `id` (continued first if paused).
    pub fn kill(&mut self, id: usize) {
        let p = &mut self.procs[id - 1];
        if let Some(mut c) = p.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        p.paused = false;
    }

    /// Whether node `id`'s process runs (it may have exited on its own).
    pub fn running(&mut self, id: usize) -> bool {
        let p = &mut self.procs[id - 1];
        match &mut p.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends SIGSTOP (`stop`) or SIGCONT to node `id`.
    pub fn signal(&mut self, id: usize, stop: bool) {
        let p = &mut self.procs[id - 1];
        let Some(c) = &p.child else { return };
        let sig = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            p.paused = stop;
        }
    }

    /// Cuts the last `bytes` bytes of the newest log segment of node `id`
    /// (which must be stopped), never into the 32-byte segment header.
    /// Returns the file and how much was cut.
    pub fn tear_log_tail(&self, id: usize, bytes: u64) -> Result<(PathBuf, u64), String> {
        let dir = self.data_dir(id).join("group-0").join("log");
        let newest = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .max()
            .ok_or_else(|| format!("no log segment in {}", dir.display()))?;
        let len = std::fs::metadata(&newest)
            .map_err(|e| format!("{}: {e}", newest.display()))?
            .len();
        let cut = bytes.min(len.saturating_sub(32));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&newest)
            .map_err(|e| format!("{}: {e}", newest.display()))?;
        f.set_len(len - cut)
            .map_err(|e| format!("{}: {e}", newest.display()))?;
        Ok((newest, cut))
    }

    /// Sets the link i→j.
    pub fn set_link(&self, i: usize, j: usize, mode: LinkMode) {
        if let Some(p) = &self.links[i - 1][j - 1] {
            p.set(mode);
        }
    }

    /// Closes the connections on every link touching node `id`.
    pub fn drop_links_of(&self, id: usize) {
        for (i, row) in self.links.iter().enumerate() {
            for (j, p) in row.iter().enumerate() {
                if (i + 1 == id || j + 1 == id)
                    && let Some(p) = p
                {
                    p.drop_connections();
                }
            }
        }
    }

    /// Blackholes both directions between every node of `a` and every node
    /// of `b`.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &i in a {
            for &j in b {
                self.set_link(i, j, LinkMode::Blackhole);
                self.set_link(j, i, LinkMode::Blackhole);
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for row in &self.links {
            for p in row.iter().flatten() {
                p.set(LinkMode::Pass);
            }
        }
    }

    /// A client of every node's service port.
    pub fn client(&self, timeout: Duration) -> KvClient {
        let mut cfg = KvClientConfig::new(self.service.clone());
        cfg.timeout = timeout;
        KvClient::new(cfg)
    }

    /// Status of node `id`, if it answers.
    pub async fn status(&self, c: &KvClient, id: usize) -> Option<NodeStatus> {
        c.server_status(self.service[id - 1]).await.ok()
    }

    /// The node that leads group 0 and is ready, waiting up to `within`.
    pub async fn leader(&self, c: &KvClient, within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        loop {
            for id in 1..=self.spec.nodes {
                if self.procs[id - 1].child.is_none() || self.procs[id - 1].paused {
                    continue;
                }
                if let Some(s) = self.status(c, id).await
                    && s.groups
                        .iter()
                        .any(|g| g.group_id == 0 && g.role == Some(Role::Leader) && g.ready)
                {
                    return Some(id);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `id` has applied everything the leader had
    /// committed when the wait began; returns how long that took.
    pub async fn caught_up(&self, id: usize, within: Duration) -> Option<Duration> {
        let c = self.client(Duration::from_millis(500));
        let start = Instant::now();
        let deadline = start + within;
        let leader = self.leader(&c, within).await?;
        let target = self
            .status(&c, leader)
            .await?
            .groups
            .iter()
            .find(|g| g.group_id == 0)?
            .commit_index;
        loop {
            if let Some(s) = self.status(&c, id).await
                && s.groups
                    .iter()
                    .any(|g| g.group_id == 0 && g.applied_index >= target)
            {
                c.close().await;
                return Some(start.elapsed());
            }
            if Instant::now() >= deadline {
                c.close().await;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `dongting admin --servers <all> --group 0 <args>` against the
    /// replicate ports; returns success and the output.
    pub fn admin(&self, args: &[&str]) -> (bool, String) {
        let servers: Vec<String> = self.replicate.iter().map(|a| a.to_string()).collect();
        match Command::new(&self.spec.binary)
            .args(["admin", "--servers", &servers.join(",")])
            .args(args)
            .output()
        {
            Ok(out) => (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).trim().to_string()
                    + String::from_utf8_lossy(&out.stderr).trim(),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// The last lines of node `id`'s log.
    pub fn log_tail(&self, id: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.spec.dir.join(format!("node{id}.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Continues paused nodes and kills every process.
    pub fn shutdown(&mut self) {
        for id in 1..=self.spec.nodes {
            if self.procs[id - 1].paused {
                self.signal(id, false);
            }
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The default `dongting` binary: `$DONGTING_BIN`, else `dongting` next to
/// this program (both are built into the same target directory), else
/// `target/debug/dongting`.
pub fn default_binary() -> PathBuf {
    if let Ok(p) = std::env::var("DONGTING_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
    {
        let p = dir.join("dongting");
        if p.exists() {
            return p;
        }
    }
    Path::new("target").join("debug").join("dongting")
}
