//! `dongting server` and `dongting dev`, and the helpers that write cluster
//! configuration files and start nodes as child processes (used by `bench`).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dongting_server::Node;
use dongting_server::config::NodeConfig;
use dongting_server::loopback::{LoopbackSpec, loopback_configs};

/// Settings of a generated loopback cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: u32,
    pub groups: Vec<u32>,
    pub elect_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub sync_force: bool,
}

/// Ports of one generated node.
#[derive(Debug, Clone, Copy)]
pub struct NodePorts {
    pub replicate: u16,
    pub service: u16,
}

/// Writes one TOML file a node into `dir` (`node<i>.toml`, data in `node<i>/`)
/// and returns the files and ports.
pub fn write_configs(dir: &Path, spec: &ClusterSpec) -> Result<Vec<(PathBuf, NodePorts)>, String> {
    let nodes = loopback_configs(&LoopbackSpec {
        nodes: spec.nodes,
        groups: spec.groups.clone(),
        data_dir: PathBuf::new(),
        elect_timeout_ms: spec.elect_timeout_ms,
        heartbeat_interval_ms: spec.heartbeat_interval_ms,
        sync_force: spec.sync_force,
    })
    .map_err(|e| format!("cannot find free ports: {e}"))?;
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let path = dir.join(format!("node{}.toml", node.node_id));
        std::fs::write(&path, &node.toml)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let ports = NodePorts {
            replicate: node.replicate_port,
            service: node.service_port,
        };
        out.push((path, ports));
    }
    Ok(out)
}

/// `dongting server`: runs one node until SIGTERM or Ctrl-C.
pub async fn server(config: &Path, overrides: &[(String, String)]) -> Result<(), String> {
    let cfg = NodeConfig::load(config, overrides).map_err(|e| e.to_string())?;
    let node_id = cfg.node_id;
    let node = Node::start(cfg).await?;
    // One line, flushed at once: scripts and tests wait for it.
    println!(
        "node {node_id} started: replicate {} service {}",
        node.replicate_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        node.service_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    crate::wait_for_shutdown_signal().await;
    eprintln!("dongting: node {node_id} shutting down");
    node.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// `dongting dev`: a 3-node cluster in this process on loopback.
pub async fn dev(dir: Option<PathBuf>, groups: Vec<u32>) -> Result<(), String> {
    let (dir, _temp) = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("dongting-dev-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let spec = ClusterSpec {
        nodes: 3,
        groups: if groups.is_empty() { vec![0] } else { groups },
        elect_timeout_ms: 1000,
        heartbeat_interval_ms: 100,
        sync_force: true,
    };
    let files = write_configs(&dir, &spec)?;
    let http_ports = dongting_server::loopback::free_loopback_ports(files.len())
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let mut nodes = Vec::new();
    for ((path, _), http) in files.iter().zip(&http_ports) {
        let set = [("http_port".to_string(), http.to_string())];
        let cfg = NodeConfig::load(path, &set).map_err(|e| e.to_string())?;
        nodes.push(Node::start(cfg).await?);
    }
    let http: Vec<String> = nodes
        .iter()
        .filter_map(Node::http_addr)
        .map(|a| format!("http://{a}"))
        .collect();
    let service: Vec<String> = files
        .iter()
        .map(|(_, p)| format!("127.0.0.1:{}", p.service))
        .collect();
    let replicate: Vec<String> = files
        .iter()
        .map(|(_, p)| format!("127.0.0.1:{}", p.replicate))
        .collect();
    println!("dev cluster of 3 nodes running; data in {}", dir.display());
    println!("  service (clients):   {}", service.join(","));
    println!("  replicate (admin):   {}", replicate.join(","));
    println!("  http (metrics, health): {}", http.join(" "));
    println!("    GET /metrics /livez /readyz /status on each");
    println!("  groups: {:?}", spec.groups);
    println!("try:");
    println!(
        "  dongting kv --servers {} --group {} put greeting hello",
        service.join(","),
        spec.groups[0]
    );
    println!(
        "  dongting kv --servers {} --group {} get greeting",
        service.join(","),
        spec.groups[0]
    );
    println!("  dongting admin --servers {} status", replicate.join(","));
    println!(
        "Ctrl-C stops the cluster{}.",
        if _temp.is_some() {
            " and deletes its data"
        } else {
            ""
        }
    );
    crate::wait_for_shutdown_signal().await;
    for n in &nodes {
        n.shutdown(Duration::from_secs(3)).await;
    }
    Ok(())
}

/// A node running as a child process; killed when dropped.
pub struct ChildNode {
    pub child: Child,
    pub service: SocketAddr,
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dongting server --config path` and waits for its start line.
pub fn spawn_node(path: &Path, threads: Option<usize>) -> Result<ChildNode, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let mut child = cmd
        .arg("server")
        .arg("--config")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start a server process: {e}"))?;
    let stdout = child.stdout.take().ok_or("server stdout missing")?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the server's start line: {e}"))?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let service = line
        .split_whitespace()
        .skip_while(|w| *w != "service")
        .nth(1)
        .and_then(|a| a.parse().ok());
    match service {
        Some(service) => Ok(ChildNode { child, service }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the server did not start: {line:?}"))
        }
    }
}
