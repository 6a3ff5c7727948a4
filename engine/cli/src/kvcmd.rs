//! `dongting kv ...` and `dongting admin ...`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Subcommand;
use dongting_client::{ClientError, KvClient, KvClientConfig};
use dongting_kv::{NodeState, NodeView};
use dongting_net::{ClientConfig, RpcClient};
use dongting_proto::service::{self as proto, AdminRequest, AdminResponse};
use dongting_proto::status::NodeStatus;

#[derive(Subcommand, Debug)]
pub enum KvOp {
    /// Set KEY to VALUE (the parent directory must exist).
    Put { key: String, value: String },
    /// Print KEY's value (linearizable read).
    Get {
        key: String,
        /// linearizable (leader), follower (any node after a ReadIndex) or stale (local).
        #[arg(long, default_value = "linearizable")]
        read_mode: String,
    },
    /// Remove a value or an empty directory.
    Rm { key: String },
    /// Create a directory.
    Mkdir { key: String },
    /// List a directory ("" for the root).
    Ls {
        #[arg(default_value = "")]
        dir: String,
        /// linearizable (leader), follower (any node after a ReadIndex) or stale (local).
        #[arg(long, default_value = "linearizable")]
        read_mode: String,
        /// Print one page of at most this many children (1 to 10000) instead of all.
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this full key (the last key of the previous page).
        #[arg(long, default_value = "")]
        start_after: String,
    },
    /// Set KEY to NEW if it holds EXPECTED ("" = absent / delete).
    Cas {
        key: String,
        expected: String,
        new: String,
    },
    /// Set several keys at once: KEY=VALUE ...
    BatchPut { pairs: Vec<String> },
    /// Read several keys.
    BatchGet { keys: Vec<String> },
    /// Remove several keys.
    BatchRm { keys: Vec<String> },
    /// Print every change of KEYs (and of the keys under them) as one line,
    /// INDEX KEY STATE VALUE (tab-separated), until Ctrl-C.
    Watch {
        #[arg(required = true)]
        keys: Vec<String>,
        /// Print the events after this raft index (0: from now).
        #[arg(long, default_value_t = 0)]
        from_index: u64,
        /// Exit after printing this many lines.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Create or update a temporary value, removed TTL_MS after its last write.
    PutTemp {
        key: String,
        value: String,
        #[arg(long)]
        ttl_ms: u64,
        /// Session (owner) id, decimal or 0x-hex; default a new random one.
        #[arg(long, value_parser = parse_client_id)]
        client_id: Option<u64>,
    },
    /// Create (or re-arm) a temporary directory; its subtree expires with it.
    MkdirTemp {
        key: String,
        #[arg(long)]
        ttl_ms: u64,
        /// Session (owner) id, decimal or 0x-hex; default a new random one.
        #[arg(long, value_parser = parse_client_id)]
        client_id: Option<u64>,
    },
    /// Re-arm a temporary node's TTL from now (its owner's --client-id only).
    UpdateTtl {
        key: String,
        #[arg(long)]
        ttl_ms: u64,
        /// Session (owner) id printed by put-temp / mkdir-temp.
        #[arg(long, value_parser = parse_client_id)]
        client_id: Option<u64>,
    },
    /// Run COMMAND while holding the lock KEY (renewed every third of the
    /// lease); its fencing token is printed and passed as DONGTING_FENCING_TOKEN.
    /// Exits with the command's status, or fails when the lock is not acquired.
    Lock {
        key: String,
        /// Lease of the lock, renewed while the command runs.
        #[arg(long, default_value_t = 10_000)]
        lease_ms: u64,
        /// How long to wait for the lock (0: fail at once when it is held).
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

impl KvOp {
    fn client_id(&self) -> Option<u64> {
        match self {
            KvOp::PutTemp { client_id, .. }
            | KvOp::MkdirTemp { client_id, .. }
            | KvOp::UpdateTtl { client_id, .. } => *client_id,
            _ => None,
        }
    }
}

fn parse_client_id(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    match r {
        Ok(0) => Err("client id 0 means no session; pick another".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("`{s}` is not a client id: {e}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum AdminOp {
    /// Status of every listed server and its groups.
    Status,
    /// List the groups each server hosts.
    ListGroups,
    /// Hand the group's leadership to node --to.
    TransferLeader {
        #[arg(long)]
        to: u32,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Start a membership change (joint consensus) to --members / --observers.
    Prepare {
        #[arg(long, value_delimiter = ',')]
        members: Vec<u32>,
        #[arg(long, value_delimiter = ',', default_value = "")]
        observers: Vec<String>,
    },
    /// Finish the change prepared at --prepare-index.
    Commit {
        #[arg(long)]
        prepare_index: u64,
    },
    /// Abandon the running change.
    Abort,
    /// Start hosting a group on every listed server.
    AddGroup {
        #[arg(long, value_delimiter = ',')]
        members: Vec<u32>,
        #[arg(long, value_delimiter = ',', default_value = "")]
        observers: Vec<String>,
    },
    /// Stop hosting a group on every listed server and delete its data.
    RemoveGroup,
    /// Save a snapshot of the group on every listed server.
    Snapshot,
    /// Add node --node at --address (host:replicatePort) to the servers list
    /// of every listed server (kept in its data directory across restarts).
    AddNode {
        #[arg(long)]
        node: u32,
        #[arg(long)]
        address: String,
    },
    /// Remove node --node from the servers list of every listed server;
    /// refused while a group there still has it as member or observer.
    RemoveNode {
        #[arg(long)]
        node: u32,
    },
}

pub fn parse_servers(s: &str) -> Result<Vec<SocketAddr>, String> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            use std::net::ToSocketAddrs;
            x.trim()
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("`{x}` is not host:port"))
        })
        .collect()
}

fn read_mode_of(s: &str) -> Result<dongting_client::Consistency, String> {
    use dongting_client::Consistency;
    match s {
        "linearizable" => Ok(Consistency::Linearizable),
        "follower" => Ok(Consistency::Follower),
        "stale" => Ok(Consistency::Stale),
        other => Err(format!(
            "--read-mode {other}: expected linearizable, follower or stale"
        )),
    }
}

fn show_err(e: ClientError) -> String {
    e.to_string()
}

fn fmt_node(n: &NodeView) -> String {
    let key = String::from_utf8_lossy(&n.key);
    match n.state {
        NodeState::Dir => format!("{key}/"),
        NodeState::Value => format!("{key}\t{}", String::from_utf8_lossy(&n.value)),
        NodeState::Lock => format!("{key}\t(lock)"),
        NodeState::Absent => format!("{key}\t(absent)"),
    }
}

/// Runs one kv command; prints results on stdout and the raft index on stderr.
pub async fn kv(servers: &str, group: u32, timeout_ms: u64, op: KvOp) -> Result<(), String> {
    let mut cfg = KvClientConfig::new(parse_servers(servers)?);
    cfg.timeout = Duration::from_millis(timeout_ms);
    cfg.client_id = op.client_id();
    let c = KvClient::new(cfg);
    if let KvOp::Lock {
        key,
        lease_ms,
        wait_ms,
        command,
    } = &op
    {
        let r = crate::lockcmd::run(&c, group, key, *lease_ms, *wait_ms, command).await;
        c.close().await;
        return match r {
            Ok(0) => Ok(()),
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        };
    }
    let r = run_kv(&c, group, op).await;
    c.close().await;
    r
}

/// Prints a temporary node's deadline and owner (the id update-ttl needs).
fn print_temp(c: &KvClient, w: &dongting_client::Written) {
    match w.outcome {
        dongting_kv::Outcome::Deadline { deadline_ms } => println!(
            "ok index={} deadline_ms={deadline_ms} client_id=0x{:x}",
            w.index,
            c.client_id()
        ),
        _ => println!("ok index={} client_id=0x{:x}", w.index, c.client_id()),
    }
}

async fn run_kv(c: &KvClient, g: u32, op: KvOp) -> Result<(), String> {
    match op {
        KvOp::Put { key, value } => {
            let w = c.put(g, &key, value.as_bytes()).await.map_err(show_err)?;
            println!("ok index={}", w.index);
        }
        KvOp::Get { key, read_mode } => {
            let r = c
                .get_with(
                    g,
                    bytes::Bytes::from(key.clone()),
                    read_mode_of(&read_mode)?,
                )
                .await
                .map_err(show_err)?;
            match r.data {
                Some(n) if n.state == NodeState::Value => {
                    println!("{}", String::from_utf8_lossy(&n.value))
                }
                Some(n) => println!("{}", fmt_node(&n)),
                None => {
                    return Err(format!(
                        "NOT_FOUND: {key} does not exist (index {})",
                        r.index
                    ));
                }
            }
            eprintln!("index={}", r.index);
        }
        KvOp::PutTemp {
            key, value, ttl_ms, ..
        } => {
            let w = c
                .put_temp(g, &key, value.as_bytes(), Duration::from_millis(ttl_ms))
                .await
                .map_err(show_err)?;
            print_temp(c, &w);
        }
        KvOp::MkdirTemp { key, ttl_ms, .. } => {
            let w = c
                .make_temp_dir(g, &key, Duration::from_millis(ttl_ms))
                .await
                .map_err(show_err)?;
            print_temp(c, &w);
        }
        KvOp::UpdateTtl { key, ttl_ms, .. } => {
            let w = c
                .update_ttl(g, &key, Duration::from_millis(ttl_ms))
                .await
                .map_err(show_err)?;
            print_temp(c, &w);
        }
        KvOp::Lock { .. } => return Err("kv lock is run by kv()".into()),
        KvOp::Rm { key } => {
            let w = c.remove(g, &key).await.map_err(show_err)?;
            println!("ok index={}", w.index);
        }
        KvOp::Mkdir { key } => {
            let w = c.mkdir(g, &key).await.map_err(show_err)?;
            println!("ok index={}", w.index);
        }
        KvOp::Ls {
            dir,
            read_mode,
            limit,
            start_after,
        } => {
            let mode = read_mode_of(&read_mode)?;
            if limit == Some(0) {
                return Err("--limit must be between 1 and 10000, got 0".into());
            }
            // Without --limit every page is printed as it arrives, so a
            // directory of any size lists in bounded memory.
            let size = limit.unwrap_or(dongting_client::MAX_LIST_PAGE);
            let mut after = start_after;
            let mut first_index = None;
            loop {
                let r = c
                    .list_page_with(g, &dir, &after, size, mode)
                    .await
                    .map_err(show_err)?;
                first_index.get_or_insert(r.index);
                for n in &r.data.nodes {
                    println!("{}", fmt_node(n));
                }
                let next = r
                    .data
                    .next_after()
                    .map(|k| String::from_utf8_lossy(k).into_owned());
                match next {
                    Some(k) if r.data.more && limit.is_some() => {
                        eprintln!("index={} more: next page with --start-after {k:?}", r.index);
                        return Ok(());
                    }
                    Some(k) if r.data.more => after = k,
                    _ => break,
                }
            }
            eprintln!("index={}", first_index.unwrap_or(0));
        }
        KvOp::Cas { key, expected, new } => {
            let w = c
                .compare_and_set(g, &key, expected.as_bytes(), new.as_bytes())
                .await
                .map_err(show_err)?;
            println!("ok index={}", w.index);
        }
        KvOp::BatchPut { pairs } => {
            let kv: Vec<(String, String)> = pairs
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| format!("`{p}` is not KEY=VALUE"))
                })
                .collect::<Result<_, _>>()?;
            let refs: Vec<(&str, &[u8])> =
                kv.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
            let w = c.batch_put(g, &refs).await.map_err(show_err)?;
            print_batch(
                &w.outcome,
                &kv.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            );
            println!("index={}", w.index);
        }
        KvOp::BatchGet { keys } => {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = c.batch_get(g, &refs).await.map_err(show_err)?;
            for (k, item) in keys.iter().zip(&r.data) {
                match item {
                    Ok(Some(n)) => println!("{}", fmt_node(n)),
                    Ok(None) => println!("{k}\t(not found)"),
                    Err(e) => println!("{k}\terror {e}"),
                }
            }
            eprintln!("index={}", r.index);
        }
        KvOp::Watch {
            keys,
            from_index,
            count,
        } => crate::watchcmd::watch(c, g, &keys, from_index, count).await?,
        KvOp::BatchRm { keys } => {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let w = c.batch_remove(g, &refs).await.map_err(show_err)?;
            print_batch(&w.outcome, &keys);
            println!("index={}", w.index);
        }
    }
    Ok(())
}

fn print_batch(o: &dongting_kv::Outcome, keys: &[String]) {
    if let dongting_kv::Outcome::Batch(items) = o {
        for (k, r) in keys.iter().zip(items) {
            match r {
                Ok(()) => println!("{k}\tok"),
                Err(e) => println!("{k}\terror {e}"),
            }
        }
    }
}

fn ids(v: &[String]) -> Result<Vec<u32>, String> {
    v.iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("`{s}` is not a node id")))
        .collect()
}

pub(crate) async fn status_of(
    c: &RpcClient,
    addr: SocketAddr,
    t: Duration,
) -> Result<NodeStatus, String> {
    let r = c
        .call(
            addr,
            proto::CMD_STATUS,
            &proto::encode_status_request(0, true),
            t,
        )
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    NodeStatus::decode(&r.body).map_err(|e| e.to_string())
}

fn print_status(addr: SocketAddr, s: &NodeStatus) {
    println!(
        "node {} at {addr} (pid {}, service port {}): {}",
        s.node_id,
        s.process_id,
        s.service_port,
        if s.ready { "ready" } else { "NOT ready" }
    );
    for p in &s.peers {
        println!(
            "  peer {} {} connected={} config_checked={}{}",
            p.node_id,
            p.address,
            p.connected,
            p.config_checked,
            if p.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.message)
            }
        );
    }
    for g in &s.groups {
        println!(
            "  group {} role={} term={} leader={} commit={} applied={} lag={} last_log={} members={:?} observers={:?}{} snapshot={} backup={} backup_at={} ready={}{}",
            g.group_id,
            g.role.map(|r| r.name()).unwrap_or("?"),
            g.term,
            g.leader_id,
            g.commit_index,
            g.applied_index,
            g.apply_lag,
            g.last_log_index,
            g.members,
            g.observers,
            g.joint
                .as_ref()
                .map(|j| format!(
                    " joint(prepare_index={} members={:?} observers={:?})",
                    j.prepare_index, j.members, j.observers
                ))
                .unwrap_or_default(),
            g.snapshot_index,
            g.backup_index,
            if g.backup_ms == 0 {
                "-".to_string()
            } else {
                dongting_server::backup::utc_stamp(g.backup_ms)
            },
            g.ready,
            if g.last_error.is_empty() {
                String::new()
            } else {
                format!(" error={}", g.last_error)
            }
        );
    }
}

pub(crate) async fn admin_call(
    c: &RpcClient,
    addr: SocketAddr,
    cmd: u16,
    req: &AdminRequest,
    t: Duration,
) -> Result<AdminResponse, String> {
    let r = c
        .call(addr, cmd, &req.encode(), t)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    AdminResponse::decode(&r.body).map_err(|e| e.to_string())
}

/// Runs one admin command against replicate addresses `servers`.
pub async fn admin(servers: &str, group: u32, timeout_ms: u64, op: AdminOp) -> Result<(), String> {
    let addrs = parse_servers(servers)?;
    let t = Duration::from_millis(timeout_ms);
    let c = RpcClient::new(ClientConfig {
        client_id: "dongting-admin".into(),
        ..ClientConfig::default()
    });
    let r = run_admin(&c, &addrs, group, t, op).await;
    c.close(Duration::from_millis(200)).await;
    r
}

async fn run_admin(
    c: &RpcClient,
    addrs: &[SocketAddr],
    group: u32,
    t: Duration,
    op: AdminOp,
) -> Result<(), String> {
    let mut req = AdminRequest {
        group_id: group,
        ..AdminRequest::default()
    };
    let each = |cmd: u16, req: AdminRequest| async move {
        let mut failed = 0;
        for &a in addrs {
            match admin_call(c, a, cmd, &req, t).await {
                Ok(r) => println!("{a}: {}", r.message),
                Err(e) => {
                    failed += 1;
                    eprintln!("{e}");
                }
            }
        }
        if failed > 0 {
            Err(format!("{failed} of {} servers failed", addrs.len()))
        } else {
            Ok(())
        }
    };
    let cmd = match op {
        AdminOp::Status => {
            let mut failed = 0;
            for &a in addrs {
                match status_of(c, a, t).await {
                    Ok(s) => print_status(a, &s),
                    Err(e) => {
                        failed += 1;
                        println!("{e}");
                    }
                }
            }
            return if failed == addrs.len() {
                Err("no server answered".into())
            } else {
                Ok(())
            };
        }
        AdminOp::ListGroups => return each(proto::CMD_ADMIN_LIST_GROUPS, req).await,
        AdminOp::Snapshot => return each(proto::CMD_ADMIN_SNAPSHOT, req).await,
        AdminOp::RemoveGroup => return each(proto::CMD_ADMIN_REMOVE_GROUP, req).await,
        AdminOp::AddNode { node, address } => {
            req.node_id = node;
            req.address = address;
            return each(proto::CMD_ADMIN_ADD_NODE, req).await;
        }
        AdminOp::RemoveNode { node } => {
            req.node_id = node;
            return each(proto::CMD_ADMIN_REMOVE_NODE, req).await;
        }
        AdminOp::AddGroup { members, observers } => {
            req.members = members;
            req.observers = ids(&observers)?;
            return each(proto::CMD_ADMIN_ADD_GROUP, req).await;
        }
        AdminOp::TransferLeader { to, timeout_ms } => {
            req.node_id = to;
            req.timeout_ms = timeout_ms;
            proto::CMD_ADMIN_TRANSFER_LEADER
        }
        AdminOp::Prepare { members, observers } => {
            req.members = members;
            req.observers = ids(&observers)?;
            proto::CMD_ADMIN_PREPARE
        }
        AdminOp::Commit { prepare_index } => {
            req.prepare_index = prepare_index;
            proto::CMD_ADMIN_COMMIT
        }
        AdminOp::Abort => proto::CMD_ADMIN_ABORT,
    };
    // Leader-only operations: find the leader through the status of the servers.
    let leader = find_group_leader(c, addrs, group, t).await?;
    let r = admin_call(c, leader, cmd, &req, t).await?;
    println!("{leader}: {} (index {})", r.message, r.index);
    Ok(())
}

async fn find_group_leader(
    c: &RpcClient,
    addrs: &[SocketAddr],
    group: u32,
    t: Duration,
) -> Result<SocketAddr, String> {
    let mut known = Vec::new();
    for &a in addrs {
        let Ok(s) = status_of(c, a, t).await else {
            continue;
        };
        if let Some(g) = s.groups.iter().find(|g| g.group_id == group) {
            if g.role == Some(dongting_proto::status::Role::Leader) {
                return Ok(a);
            }
            if g.leader_id != 0 {
                known.push(g.leader_id);
            }
        }
    }
    match known.first() {
        Some(id) => Err(format!(
            "group {group}: the leader is node {id}, which is not among --servers"
        )),
        None => Err(format!(
            "group {group}: no leader known to the listed servers"
        )),
    }
}
