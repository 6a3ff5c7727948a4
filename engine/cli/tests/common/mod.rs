//! Shared harness of the multi-process tests: `dongting server` processes on
//! loopback, their configs, a client, leader lookup and the admin CLI.
#![allow(dead_code, unused_imports)]

pub use std::io::{BufRead, BufReader};
pub use std::net::SocketAddr;
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration, Instant};

pub use dongting_client::{ClientError, KvClient, KvClientConfig};
pub use dongting_kv::KvError;
pub use dongting_proto::status::{NodeStatus, Role};

pub const BIN: &str = env!("CARGO_BIN_EXE_dongting");

pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The addresses `dongting dev` prints: service and replicate lists
/// (comma-separated) and each node's HTTP address (`host:port`).
pub struct DevAddrs {
    pub service: String,
    pub replicate: String,
    pub http: Vec<String>,
}

/// Starts `dongting dev --dir DIR` and reads the addresses it prints; its
/// later output is drained on a thread of its own.
pub fn start_dev(dir: &Path) -> (Child, DevAddrs) {
    let mut child = Command::new(BIN)
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

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub service: Vec<SocketAddr>,
    pub replicate: Vec<SocketAddr>,
    pub procs: Vec<Option<Proc>>,
}

pub fn free_ports(n: usize) -> Vec<u16> {
    dongting_server::loopback::free_loopback_ports(n).expect("free ports")
}

pub fn config_text(id: usize, rep: &[u16], svc: u16, servers_override: Option<&str>) -> String {
    let servers: Vec<String> = rep
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  {{ id = {}, address = \"127.0.0.1:{p}\" }},", i + 1))
        .collect();
    let servers = servers_override
        .map(str::to_string)
        .unwrap_or(servers.join("\n"));
    format!(
        "node_id = {id}\ndata_dir = \"node{id}\"\nservice_port = {svc}\nelect_timeout_ms = 1000\n\
         heartbeat_interval_ms = 100\nservers = [\n{servers}\n]\n[limits]\nmax_value_bytes = 4096\n\
         [[groups]]\nid = 0\nmembers = [1, 2, 3]\n"
    )
}

pub fn spawn(path: &Path) -> Proc {
    let mut child = Command::new(BIN)
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
    for (r, log) in [
        (
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            log.clone(),
        ),
        (Box::new(stderr), log.clone()),
    ] {
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                log.lock().expect("log").push_str(&(line + "\n"));
            }
        });
    }
    let p = Proc { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.log.lock().expect("log").contains("started: replicate") {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            p.log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(6);
        let rep = &ports[..3];
        let svc = &ports[3..];
        for id in 1..=3 {
            std::fs::write(
                dir.path().join(format!("node{id}.toml")),
                config_text(id, rep, svc[id - 1], None),
            )
            .expect("write config");
        }
        let mut c = Cluster {
            service: svc
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            replicate: rep
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            procs: Vec::new(),
            dir,
        };
        for id in 1..=3 {
            let p = spawn(&c.config(id));
            c.procs.push(Some(p));
        }
        c
    }

    pub fn config(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("node{id}.toml"))
    }

    pub fn client(&self) -> KvClient {
        let mut cfg = KvClientConfig::new(self.service.clone());
        cfg.timeout = Duration::from_secs(10);
        KvClient::new(cfg)
    }

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

    pub fn admin(&self, args: &[&str]) -> (bool, String) {
        let servers: Vec<String> = self.replicate.iter().map(|a| a.to_string()).collect();
        let out = Command::new(BIN)
            .args(["admin", "--servers", &servers.join(",")])
            .args(args)
            .output()
            .expect("run admin");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

pub fn kv_code(e: &ClientError) -> Option<&'static str> {
    match e {
        ClientError::Kv { error, .. } => Some(error.name()),
        _ => None,
    }
}
