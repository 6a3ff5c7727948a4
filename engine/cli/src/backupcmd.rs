//! `dongting backup save|inspect|restore`: online backups of raft groups
//! copied off a node over the replicate port, their verification, and their
//! restore into the data directory of a node of a new cluster
//! (`docs/operations.md`).

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use dongting_net::{ClientConfig, RpcClient};
use dongting_proto::service::{self as proto, AdminRequest, BackupChunk, BackupReadRequest};
use dongting_proto::status::{NodeStatus, Role};
use dongting_server::backup::{BackupHeader, restore_backup, verify_backup, write_backup};
use dongting_server::config::NodeConfig;

use crate::kvcmd::{admin_call, parse_servers, status_of};

/// Bytes asked for per read of a snapshot file.
const READ_BYTES: u32 = 1 << 20;
/// Times a read is retried at the same offset after a failed call.
const READ_RETRIES: u32 = 5;
/// Times a new snapshot is taken when the one named was removed before its
/// stream began.
const SNAPSHOT_RETRIES: u32 = 3;

#[derive(Subcommand, Debug)]
pub enum BackupOp {
    /// Take a snapshot of a group now (on its leader, or on --from) and copy
    /// it into FILE (with --all-groups: one file per group into the
    /// directory --out, named group-<id>.backup).
    Save {
        /// Replicate addresses (the `servers` entries), comma-separated.
        #[arg(long, default_value = "127.0.0.1:4001")]
        servers: String,
        /// Raft group.
        #[arg(long, default_value_t = 0)]
        group: u32,
        /// Back up every group the source node hosts.
        #[arg(long)]
        all_groups: bool,
        /// Node id to take the snapshot on instead of the group's leader.
        #[arg(long)]
        from: Option<u32>,
        /// Backup file (a directory with --all-groups).
        #[arg(long)]
        out: PathBuf,
        /// Time each call may take.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Print a backup's header and verify the whole file (exit status 1 when
    /// it is damaged or truncated).
    Inspect {
        /// Backup file.
        file: PathBuf,
    },
    /// Prepare a node's data directory to start a group from a backup (the
    /// node must be stopped and hold no data of the group).
    Restore {
        /// Backup file.
        file: PathBuf,
        /// The node's configuration file (its data_dir, servers and groups).
        #[arg(long)]
        config: PathBuf,
        /// Voting members of the restored group, comma-separated node ids
        /// (default: the membership in the backup).
        #[arg(long, value_delimiter = ',')]
        members: Option<Vec<u32>>,
    },
}

/// Runs one backup command.
pub async fn backup(op: BackupOp) -> Result<(), String> {
    match op {
        BackupOp::Save {
            servers,
            group,
            all_groups,
            from,
            out,
            timeout_ms,
        } => {
            let addrs = parse_servers(&servers)?;
            let c = RpcClient::new(ClientConfig {
                client_id: "dongting-backup".into(),
                ..ClientConfig::default()
            });
            let t = Duration::from_millis(timeout_ms);
            let r = save(&c, &addrs, group, all_groups, from, &out, t).await;
            c.close(Duration::from_millis(200)).await;
            r
        }
        BackupOp::Inspect { file } => {
            let info = tokio::task::spawn_blocking(move || verify_backup(&file))
                .await
                .map_err(|e| e.to_string())??;
            print_header(&info.header)?;
            println!("sessions: {}", info.sessions);
            println!("file bytes: {}", info.file_bytes);
            println!("verified: backup checksum and every snapshot chunk checksum match");
            Ok(())
        }
        BackupOp::Restore {
            file,
            config,
            members,
        } => {
            let cfg = NodeConfig::load(&config, &[]).map_err(|e| e.to_string())?;
            let msg = tokio::task::spawn_blocking(move || {
                restore_backup(&cfg, &file, members.as_deref())
            })
            .await
            .map_err(|e| e.to_string())??;
            println!("{msg}");
            Ok(())
        }
    }
}

fn print_header(h: &BackupHeader) -> Result<(), String> {
    let m = h.decoded_membership()?;
    println!("group: {}", h.group_id);
    println!("index: {}", h.index);
    println!("term: {}", h.term);
    println!("members: {:?}", m.members);
    println!("observers: {:?}", m.observers);
    println!("created_ms: {}", h.created_ms);
    println!("keys: {}", h.key_count);
    println!("snapshot bytes: {}", h.snapshot_bytes);
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn save(
    c: &RpcClient,
    addrs: &[SocketAddr],
    group: u32,
    all_groups: bool,
    from: Option<u32>,
    out: &Path,
    t: Duration,
) -> Result<(), String> {
    let mut statuses = Vec::new();
    for &a in addrs {
        match status_of(c, a, t).await {
            Ok(s) => statuses.push((a, s)),
            Err(e) => eprintln!("{e}"),
        }
    }
    if statuses.is_empty() {
        return Err("no server answered".into());
    }
    let from_addr = match from {
        Some(n) => Some(
            statuses
                .iter()
                .find(|(_, s)| s.node_id == n)
                .map(|(a, _)| *a)
                .ok_or_else(|| format!("node {n} is not among the servers that answered"))?,
        ),
        None => None,
    };
    if !all_groups {
        let src = match from_addr {
            Some(a) => a,
            None => leader_of(&statuses, group)?,
        };
        return save_group(c, src, group, out, t).await;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let mut groups: Vec<u32> = statuses
        .iter()
        .filter(|(a, _)| from_addr.is_none_or(|f| f == *a))
        .flat_map(|(_, s)| s.groups.iter().map(|g| g.group_id))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.is_empty() {
        return Err("the servers host no group".into());
    }
    for g in groups {
        let src = match from_addr {
            Some(a) => a,
            None => leader_of(&statuses, g)?,
        };
        save_group(c, src, g, &out.join(format!("group-{g}.backup")), t).await?;
    }
    Ok(())
}

fn leader_of(statuses: &[(SocketAddr, NodeStatus)], group: u32) -> Result<SocketAddr, String> {
    statuses
        .iter()
        .find(|(_, s)| {
            s.groups
                .iter()
                .any(|g| g.group_id == group && g.role == Some(Role::Leader))
        })
        .map(|(a, _)| *a)
        .ok_or_else(|| {
            format!("group {group}: no leader among the servers that answered; use --from")
        })
}

/// Takes a snapshot of `group` on `src` and copies it into `out`.
async fn save_group(
    c: &RpcClient,
    src: SocketAddr,
    group: u32,
    out: &Path,
    t: Duration,
) -> Result<(), String> {
    let part = PathBuf::from(format!("{}.part", out.display()));
    let mut attempt = 0;
    let r = loop {
        attempt += 1;
        let req = AdminRequest {
            group_id: group,
            ..AdminRequest::default()
        };
        let snap = admin_call(c, src, proto::CMD_ADMIN_SNAPSHOT, &req, t).await?;
        if snap.index == 0 {
            break Err(format!("group {group} on {src} has applied nothing yet"));
        }
        match stream(c, src, group, snap.index, &part, t).await {
            Ok(()) => break Ok(snap.index),
            Err(Streamed::Gone(e)) if attempt < SNAPSHOT_RETRIES => {
                eprintln!("{e}; taking a new snapshot");
            }
            Err(Streamed::Gone(e) | Streamed::Failed(e)) => break Err(e),
        }
    };
    let r = match r {
        Ok(_) => {
            let (p, o) = (part.clone(), out.to_path_buf());
            tokio::task::spawn_blocking(move || write_backup(group, &p, &o, now_ms()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&part);
    let h = r?;
    println!(
        "{}: group {} index {} term {} keys {} snapshot bytes {} (from {src})",
        out.display(),
        h.group_id,
        h.index,
        h.term,
        h.key_count,
        h.snapshot_bytes
    );
    Ok(())
}

enum Streamed {
    /// The snapshot was removed before its stream began: take another.
    Gone(String),
    Failed(String),
}

/// Copies the snapshot file at `index` from `src` into `part`, reading by
/// offset; a failed read is retried at the same offset.
async fn stream(
    c: &RpcClient,
    src: SocketAddr,
    group: u32,
    index: u64,
    part: &Path,
    t: Duration,
) -> Result<(), Streamed> {
    let fail = |e: String| Streamed::Failed(e);
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(part)
        .map_err(|e| fail(format!("create {}: {e}", part.display())))?;
    let mut offset = 0u64;
    let mut retries = 0;
    loop {
        let q = BackupReadRequest {
            group_id: group,
            index,
            offset,
            max_bytes: READ_BYTES,
        };
        let chunk = match c
            .call(src, proto::CMD_ADMIN_BACKUP_READ, &q.encode(), t)
            .await
        {
            Ok(r) => BackupChunk::decode(&r.body).map_err(|e| fail(e.to_string()))?,
            Err(e) => {
                let e = format!("{src}: reading the snapshot at {index}, offset {offset}: {e}");
                if offset == 0 && e.contains("has no snapshot at index") {
                    return Err(Streamed::Gone(e));
                }
                retries += 1;
                if retries > READ_RETRIES {
                    return Err(fail(e));
                }
                eprintln!("{e}; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(retries))).await;
                continue;
            }
        };
        retries = 0;
        if chunk.index != index || chunk.offset != offset {
            return Err(fail(format!(
                "{src} answered index {} offset {}, asked {index} {offset}",
                chunk.index, chunk.offset
            )));
        }
        f.write_all_at(&chunk.data, offset)
            .map_err(|e| fail(format!("write {}: {e}", part.display())))?;
        offset += chunk.data.len() as u64;
        if offset >= chunk.file_bytes {
            break;
        }
        if chunk.data.is_empty() {
            return Err(fail(format!(
                "{src} sent no bytes at offset {offset} of {}",
                chunk.file_bytes
            )));
        }
    }
    f.sync_all()
        .map_err(|e| fail(format!("fsync {}: {e}", part.display())))
}
