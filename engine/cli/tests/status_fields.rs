//! Every status field that docs/server.md ("Status fields") documents is
//! checked here against the state of a real three-process cluster. The test
//! reads the documented names and fails on one it has no check for, so a
//! field added to the docs needs a check too.

mod common;

use std::collections::BTreeSet;

use common::*;

/// The field names the "Status fields" section of docs/server.md documents:
/// those of the "Per node" paragraph and the first column of the table.
fn documented_fields() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/server.md"))
        .expect("docs/server.md");
    let section = doc
        .split("\n## Status fields\n")
        .nth(1)
        .expect("a Status fields section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut fields = BTreeSet::new();
    let mut ticked = |text: &str| {
        for (i, part) in text.split('`').enumerate() {
            if i % 2 == 1 {
                fields.insert(part.to_string());
            }
        }
    };
    let per_node = section
        .split("\n\n")
        .find(|p| p.trim_start().starts_with("Per node:"))
        .expect("a Per node paragraph");
    ticked(per_node);
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        ticked(row.split('|').nth(1).unwrap_or_default());
    }
    fields
}

/// The `name=value` pairs of group `group`'s line in `dongting admin status`
/// output (values up to the next space outside brackets).
fn printed_fields(out: &str, node: usize, group: u32) -> Vec<(String, String)> {
    let block = out
        .split("node ")
        .find(|b| b.starts_with(&format!("{node} at ")))
        .unwrap_or_else(|| panic!("node {node} missing from:\n{out}"));
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("group {group} ")))
        .unwrap_or_else(|| panic!("group {group} of node {node} missing from:\n{out}"));
    let mut pairs = Vec::new();
    let mut depth = 0;
    let mut word = String::new();
    for ch in line.chars().chain(std::iter::once(' ')) {
        match ch {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            _ => {}
        }
        if ch == ' ' && depth == 0 {
            if let Some(rest) = word.strip_prefix("joint(") {
                pairs.push(("joint".into(), rest.trim_end_matches(')').to_string()));
            } else if let Some((k, v)) = word.split_once('=') {
                pairs.push((k.to_string(), v.to_string()));
            }
            word.clear();
        } else {
            word.push(ch);
        }
    }
    pairs
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_status_field_matches_the_cluster() {
    let documented = documented_fields();
    assert!(documented.len() >= 15, "{documented:?}");
    let mut checked: BTreeSet<&str> = BTreeSet::new();

    let cluster = Cluster::start(BIN);
    let c = cluster.client();
    let leader = cluster.leader(&c).await;
    let w = c.put(0, "status_k", b"v").await.expect("put");

    // Every node: its own identity, its peers, its readiness.
    let deadline = Instant::now() + Duration::from_secs(20);
    let statuses: Vec<NodeStatus> = loop {
        let mut all = Vec::new();
        for id in 1..=3 {
            all.push(cluster.status(&c, id).await.expect("status"));
        }
        if all
            .iter()
            .all(|s| s.ready && s.groups.iter().all(|g| g.ready))
        {
            break all;
        }
        assert!(Instant::now() < deadline, "cluster never ready: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, s) in statuses.iter().enumerate() {
        let id = i + 1;
        assert_eq!(s.node_id as usize, id);
        let pid = cluster.procs[i].as_ref().expect("running").child.id();
        assert_eq!(s.process_id, u64::from(pid), "node {id}");
        assert_eq!(s.service_port, cluster.service[i].port(), "node {id}");
        let mut peers: Vec<u32> = s.peers.iter().map(|p| p.node_id).collect();
        peers.sort_unstable();
        let others: Vec<u32> = (1..=3u32).filter(|&p| p as usize != id).collect();
        assert_eq!(peers, others, "node {id}'s peers");
        for p in &s.peers {
            assert!(p.connected && p.config_checked, "node {id}: {p:?}");
            assert!(p.message.is_empty(), "node {id}: {p:?}");
        }
    }
    checked.extend(["node_id", "process_id", "service_port", "ready"]);
    checked.extend(["connected", "config_checked"]);

    // The groups, as each node prints them (the documented names are the
    // printed ones) and as its status carries them.
    let (ok, out) = cluster.admin(&["status"]);
    assert!(ok, "{out}");
    let term = statuses[leader - 1].groups[0].term;
    for (i, s) in statuses.iter().enumerate() {
        let id = i + 1;
        let g = &s.groups[0];
        let p = printed_fields(&out, id, 0);
        let role = field(&p, "role").expect("role");
        assert_eq!(
            role,
            if id == leader { "leader" } else { "follower" },
            "node {id}"
        );
        assert!(term >= 1);
        assert_eq!(g.term, term, "node {id}");
        assert_eq!(field(&p, "term"), Some(term.to_string().as_str()));
        assert_eq!(g.leader_id as usize, leader, "node {id}");
        assert_eq!(field(&p, "leader"), Some(leader.to_string().as_str()));
        let num = |name: &str| -> u64 {
            field(&p, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} of node {id} in {p:?}"))
        };
        // The leader acknowledged the write: it is committed and applied there,
        // and printed values are never behind the status read before them.
        if id == leader {
            assert!(
                g.commit_index >= w.index && g.applied_index >= w.index,
                "{g:?}"
            );
        }
        assert!(num("commit") >= g.commit_index && num("applied") >= g.applied_index);
        assert_eq!(num("lag"), num("commit") - num("applied"), "{p:?}");
        assert!(num("last_log") >= num("commit"), "{p:?}");
        assert_eq!(field(&p, "members"), Some("[1, 2, 3]"));
        assert_eq!(field(&p, "observers"), Some("[]"));
        assert_eq!(field(&p, "joint"), None, "no change in progress: {p:?}");
        assert_eq!(field(&p, "snapshot"), Some("0"), "no snapshot yet: {p:?}");
        assert_eq!(field(&p, "backup"), Some("0"), "no backup_dir: {p:?}");
        assert_eq!(field(&p, "backup_at"), Some("-"), "no backup_dir: {p:?}");
        assert_eq!((g.backup_index, g.backup_ms), (0, 0), "{g:?}");
        assert_eq!(field(&p, "ready"), Some("true"));
        assert_eq!(field(&p, "error"), None, "healthy: {p:?}");
        assert!(g.last_error.is_empty());
    }
    checked.extend([
        "role", "term", "leader", "commit", "applied", "lag", "last_log",
    ]);
    checked.extend(["members", "observers", "ready", "error"]);

    // A snapshot shows on every node at or above the acknowledged write.
    let (ok, out) = cluster.admin(&["snapshot"]);
    assert!(ok && out.contains("snapshot saved"), "{out}");
    let (ok, out) = cluster.admin(&["status"]);
    assert!(ok, "{out}");
    for id in 1..=3 {
        let p = printed_fields(&out, id, 0);
        let snap: u64 = field(&p, "snapshot")
            .and_then(|v| v.parse().ok())
            .expect("snapshot");
        assert!(snap >= w.index, "node {id}: {p:?}");
    }
    checked.insert("snapshot");

    // A prepared change shows as joint with its target until it is aborted.
    let (ok, out) = cluster.admin(&["prepare", "--members", "1,2"]);
    assert!(ok, "{out}");
    let prepare: u64 = out
        .split("index ")
        .last()
        .and_then(|s| s.trim().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("prepare index in {out}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = cluster.status(&c, leader).await.expect("status");
        if let Some(j) = &s.groups[0].joint {
            assert_eq!(j.prepare_index, prepare);
            assert_eq!(j.members, vec![1, 2]);
            assert!(j.observers.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "joint never shown: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out) = cluster.admin(&["status"]);
    assert!(ok, "{out}");
    let p = printed_fields(&out, leader, 0);
    assert_eq!(
        field(&p, "joint"),
        Some(format!("prepare_index={prepare} members=[1, 2] observers=[]").as_str()),
        "{p:?}"
    );
    let (ok, out) = cluster.admin(&["abort"]);
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.status(&c, leader).await.expect("status").groups[0]
        .joint
        .is_some()
    {
        assert!(Instant::now() < deadline, "abort never shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    checked.insert("joint");
    c.close().await;
    drop(cluster);

    // With scheduled backups the leader shows its last good backup: index
    // and time, as the file it wrote names them.
    let cluster = Cluster::start_with_each(
        BIN,
        &|id| {
            format!("[group_defaults]\nbackup_dir = \"backups{id}\"\nbackup_interval_seconds = 1\n")
        },
        false,
    );
    let c = cluster.client();
    let leader = cluster.leader(&c).await;
    let w = c.put(0, "status_k", b"v").await.expect("put");
    let deadline = Instant::now() + Duration::from_secs(20);
    let p = loop {
        let (ok, out) = cluster.admin(&["status"]);
        assert!(ok, "{out}");
        let p = printed_fields(&out, leader, 0);
        if field(&p, "backup")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|b| b >= w.index)
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no backup shown: {p:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let index = field(&p, "backup").expect("backup");
    let at = field(&p, "backup_at").expect("backup_at");
    let dir = cluster.dir.path().join(format!("backups{leader}"));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("backup dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let want = format!(
        "group-0-{:020}-{at}.dtbackup",
        index.parse::<u64>().expect("index")
    );
    assert!(names.contains(&want), "{want} not in {names:?}");
    checked.extend(["backup", "backup_at"]);

    let missing: Vec<&String> = documented
        .iter()
        .filter(|f| !checked.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "documented in docs/server.md but not checked: {missing:?}"
    );
    c.close().await;
}
