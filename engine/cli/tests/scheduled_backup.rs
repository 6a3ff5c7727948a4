//! Scheduled backups with real `dongting server` processes: every node of a
//! three-node cluster has its own `backup_dir`; only the group's leader
//! writes backups there, every interval, keeps `backup_keep` of them, and
//! its status and metrics show the last one.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

/// The group's backup files in `dir`, sorted by name (oldest first).
fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("dir entry").path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    v.retain(|p| {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        n.starts_with("group-0-") && n.ends_with(".dtbackup")
    });
    v.sort();
    v
}

/// The index in a backup file name `group-0-<index>-<time>.dtbackup`.
fn name_index(p: &Path) -> u64 {
    let n = p.file_name().and_then(|n| n.to_str()).expect("name");
    n.split('-')
        .nth(2)
        .and_then(|i| i.parse().ok())
        .expect("index in name")
}

fn metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    text
}

fn sample(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{group=\"0\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_writes_verified_rotated_backups_every_interval() {
    let cluster = Cluster::start_with_each(
        BIN,
        &|id| {
            format!(
                "[group_defaults]\nbackup_dir = \"backups{id}\"\n\
                 backup_interval_seconds = 1\nbackup_keep = 2\n"
            )
        },
        true,
    );
    let dir = |id: usize| cluster.dir.path().join(format!("backups{id}"));
    let c = cluster.client();
    let leader = cluster.leader(&c).await;
    let term = cluster.status(&c, leader).await.expect("status").groups[0].term;
    let mut last = 0;
    for i in 0..200 {
        last = c
            .put(0, &format!("sched_k{i}"), format!("v{i}").as_bytes())
            .await
            .expect("put")
            .index;
    }

    // Backups at or past the last write appear; never more than 2 are kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let files = backups(&dir(leader));
        assert!(files.len() <= 2, "more than backup_keep kept: {files:?}");
        seen.extend(files.iter().cloned());
        if seen.len() >= 4 && files.last().is_some_and(|f| name_index(f) >= last) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rotated backup at or past index {last}: {files:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = cluster.status(&c, leader).await.expect("status");
    let g = &status.groups[0];
    assert_eq!(g.term, term, "leadership moved during the test: {g:?}");

    // The newest backup verifies and holds the writes.
    let newest = backups(&dir(leader)).pop().expect("a backup");
    let out = Command::new(BIN)
        .args(["backup", "inspect"])
        .arg(&newest)
        .output()
        .expect("inspect");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("group: 0"), "{text}");
    assert!(
        text.contains(&format!("index: {}", name_index(&newest))),
        "{text}"
    );
    assert!(text.contains("verified"), "{text}");

    // Only the leader wrote backups.
    for id in (1..=3).filter(|&id| id != leader) {
        assert!(backups(&dir(id)).is_empty(), "follower {id} wrote backups");
    }

    // Status and metrics show the last good backup.
    assert!(
        g.backup_index >= last && g.backup_index <= g.commit_index,
        "{g:?}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(
        g.backup_ms > 0 && g.backup_ms <= now_ms && now_ms - g.backup_ms < 30_000,
        "{g:?}"
    );
    let m = metrics(cluster.http[leader - 1]);
    let idx = sample(&m, "dongting_backup_last_index").expect("last index");
    assert!(idx >= last as f64, "{idx} < {last}\n{m}");
    let at = sample(&m, "dongting_backup_last_timestamp_seconds").expect("timestamp");
    assert!(at * 1000.0 >= (g.backup_ms as f64) - 1.0, "{at} {g:?}");
    assert!(
        sample(&m, "dongting_backups_written_total").expect("written") >= 4.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "dongting_backups_failed_total"),
        Some(0.0),
        "{m}"
    );
    for id in (1..=3).filter(|&id| id != leader) {
        let m = metrics(cluster.http[id - 1]);
        assert_eq!(
            sample(&m, "dongting_backups_written_total"),
            Some(0.0),
            "{m}"
        );
    }
    let p = cluster.procs[leader - 1].as_ref().expect("leader running");
    assert!(p.logged("backup written"), "no `backup written` line");
    c.close().await;
}
