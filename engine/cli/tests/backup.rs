//! Backups with real `dongting server` processes: `backup save` while writes
//! go on, `backup inspect` on good, damaged and truncated files, `backup
//! restore` into a new cluster (the disaster-recovery drill of
//! docs/operations.md), and a member whose data was lost rejoining by itself.

mod common;

use common::*;
use dongting_client::WatchItem;
use dongting_kv::NodeState;

/// Keys written before the backup: `app.d<i % DIRS>.k<i>` = `v<i>`.
const KEYS: usize = 10_000;
const DIRS: usize = 10;
const BATCH: usize = 500;

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Runs `BIN backup args...`: whether it succeeded, stdout and stderr.
fn backup_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("backup")
        .args(args)
        .output()
        .expect("run backup");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn save(cluster: &Cluster, out: &Path) -> String {
    let (ok, text) = backup_cli(&[
        "save",
        "--servers",
        &join(&cluster.replicate),
        "--group",
        "0",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(ok, "backup save failed: {text}");
    text
}

/// The `name: value` line of `backup inspect` output.
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .expect("number")
}

fn key(i: usize) -> String {
    format!("app.d{}.k{i}", i % DIRS)
}

async fn fill(c: &KvClient) -> u64 {
    c.mkdir(0, "app").await.expect("mkdir app");
    for d in 0..DIRS {
        c.mkdir(0, &format!("app.d{d}")).await.expect("mkdir");
    }
    let mut last = 0;
    for start in (0..KEYS).step_by(BATCH) {
        let keys: Vec<String> = (start..start + BATCH).map(key).collect();
        let values: Vec<String> = (start..start + BATCH).map(|i| format!("v{i}")).collect();
        let entries: Vec<(&str, &[u8])> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        last = c.batch_put(0, &entries).await.expect("batch put").index;
    }
    last
}

/// Every key of [`fill`] with its value, listed directory by directory.
async fn check_keys(c: &KvClient) {
    let dirs = c.list(0, "app").await.expect("list app").data;
    assert_eq!(dirs.len(), DIRS);
    assert!(dirs.iter().all(|n| n.state == NodeState::Dir));
    let mut seen = 0;
    for d in 0..DIRS {
        let items = c.list(0, &format!("app.d{d}")).await.expect("list").data;
        for n in &items {
            let k = std::str::from_utf8(&n.key).expect("utf8");
            let i: usize = k.rsplit_once(".k").expect("key").1.parse().expect("index");
            assert_eq!(i % DIRS, d, "{k} in the wrong directory");
            assert_eq!(n.value, format!("v{i}").as_bytes(), "value of {k}");
        }
        seen += items.len();
    }
    assert_eq!(seen, KEYS);
}

/// The full-cluster recovery of docs/operations.md: a backup taken while
/// writes go on, every node and its data lost, three new nodes (other ports,
/// other data directories) restored from the file; then one restored
/// member's data is lost and it rejoins by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disaster_recovery_drill_restores_a_whole_cluster_from_a_backup() {
    let t0 = Instant::now();
    let mut old = Cluster::start(BIN);
    let c = old.client();
    old.leader(&c).await;
    let before_backup = fill(&c).await;
    let filled = t0.elapsed();
    c.mkdir(0, "tmp").await.expect("mkdir tmp");
    const TTL_MS: u64 = 20_000;
    let w = c
        .put_temp(0, "tmp.session", b"alive", Duration::from_millis(TTL_MS))
        .await
        .expect("put temp");
    let dongting_kv::Outcome::Deadline { deadline_ms } = w.outcome else {
        panic!("put_temp answered {:?}", w.outcome);
    };
    c.mkdir(0, "locks").await.expect("mkdir locks");
    const LEASE_MS: u64 = 15_000;
    let held = c.create_lock(0, "locks.main").expect("lock");
    let old_token = held
        .try_lock(LEASE_MS, 0)
        .await
        .expect("try lock")
        .expect("held");

    // Writes go on while the backup is taken: each one is in the backup
    // exactly when its index is at or below the backup's.
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..200 {
                let w = c.put(0, &format!("live{i}"), b"x").await.expect("live put");
                done.push((i, w.index));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let files = tempfile::tempdir().expect("tempdir");
    let file = files.path().join("g0.backup");
    let t_save = Instant::now();
    save(&old, &file);
    let save_ms = t_save.elapsed().as_millis();
    let live = writer.await.expect("writer");
    let (ok, text) = backup_cli(&["inspect", file.to_str().expect("path")]);
    assert!(ok, "inspect failed: {text}");
    let index = field(&text, "index");
    assert!(index > before_backup);
    // 10,000 values, app and its 10 directories, tmp, tmp.session, locks,
    // locks.main, and the live keys written before the snapshot.
    let live_in: Vec<usize> = live
        .iter()
        .filter(|(_, i)| *i <= index)
        .map(|(k, _)| *k)
        .collect();
    assert!(
        !live_in.is_empty() && live_in.len() < live.len(),
        "the snapshot should fall amid the live writes: {} of {} before it",
        live_in.len(),
        live.len()
    );
    assert_eq!(
        field(&text, "keys") as usize,
        KEYS + 1 + DIRS + 4 + live_in.len()
    );
    assert!(text.contains("members: [1, 2, 3]"), "{text}");
    c.close().await;

    // Every node and every data directory is lost.
    for id in 1..=3 {
        old.procs[id - 1] = None;
    }
    for id in 1..=3 {
        std::fs::remove_dir_all(old.dir.path().join(format!("node{id}"))).expect("rm data");
    }
    drop(old);

    // Three new nodes on other ports with other data directories.
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(6);
    let (rep, svc) = (&ports[..3], &ports[3..]);
    for id in 1..=3 {
        let cfg = dir.path().join(format!("node{id}.toml"));
        std::fs::write(&cfg, cluster_toml(id, rep, svc[id - 1], None)).expect("config");
        let (ok, text) = backup_cli(&[
            "restore",
            file.to_str().expect("path"),
            "--config",
            cfg.to_str().expect("path"),
        ]);
        assert!(ok, "restore failed: {text}");
    }
    // A second restore finds the data and refuses.
    let (ok, text) = backup_cli(&[
        "restore",
        file.to_str().expect("path"),
        "--config",
        dir.path().join("node1.toml").to_str().expect("path"),
    ]);
    assert!(!ok && text.contains("already holds data"), "{text}");
    let mut new = Cluster::of_files(BIN, dir, rep, svc);
    new.spawn_all();
    let c = new.client();
    new.leader(&c).await;

    check_keys(&c).await;
    for (i, _) in &live {
        let got = c.get(0, &format!("live{i}")).await.expect("get").data;
        assert_eq!(got.is_some(), live_in.contains(i), "live{i}");
    }
    // The temporary node keeps its deadline and expires at about that time.
    let n = c
        .get(0, "tmp.session")
        .await
        .expect("get temp")
        .data
        .expect("the temporary node was restored");
    assert_eq!(n.ttl.map(|t| t.deadline_ms), Some(deadline_ms));
    // The held lock carries over: same holder and token.
    let info = c
        .lock_info(0, "locks.main")
        .await
        .expect("lock info")
        .data
        .expect("lock");
    assert_eq!(info.holder.map(|h| h.1), Some(old_token));
    // A watch resumed from before the backup learns the history is gone.
    let mut watch = c
        .watch(0, &[b"app.d0.k0"], before_backup - 1)
        .await
        .expect("watch");
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("watch answered")
        .expect("watch item");
    assert!(
        matches!(item, WatchItem::Compacted { .. }),
        "watch from before the backup: {item:?}"
    );
    watch.close().await;
    // Clients write and read.
    let w = c.put(0, "after_restore", b"new").await.expect("put");
    assert!(
        w.index > index,
        "new writes continue after the backup's index"
    );
    let got = c
        .get(0, "after_restore")
        .await
        .expect("get")
        .data
        .expect("value");
    assert_eq!(&got.value[..], b"new");
    // A new client takes the lock once the old holder's lease ends, with a
    // fencing token above the old one.
    let other = c.create_lock(0, "locks.main").expect("lock");
    let token = other
        .try_lock(10_000, LEASE_MS + 10_000)
        .await
        .expect("try lock")
        .expect("acquired after the old lease");
    assert!(token > old_token, "token {token} after {old_token}");
    // The temporary node expires at its old deadline.
    let limit = Instant::now() + Duration::from_secs(30);
    while c.get(0, "tmp.session").await.expect("get").data.is_some() {
        assert!(Instant::now() < limit, "the temporary node never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = wall_ms().saturating_sub(deadline_ms);
    assert!(wall_ms() >= deadline_ms, "expired before its deadline");
    assert!(late < 5_000, "expired {late} ms after its deadline");

    // One member's data is lost while it is stopped: restarted, it catches
    // up through a snapshot from the leader with no other step.
    let leader = new.leader(&c).await;
    let lost = if leader == 3 { 2 } else { 3 };
    new.procs[lost - 1] = None;
    std::fs::remove_dir_all(new.dir.path().join(format!("node{lost}"))).expect("rm data");
    let w = c.put(0, "while_down", b"1").await.expect("put");
    let p = spawn_server(BIN, &new.config(lost));
    new.procs[lost - 1] = Some(p);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = new.status(&c, lost).await;
        if let Some(g) = st.as_ref().and_then(|s| s.groups.first())
            && g.applied_index >= w.index
        {
            assert!(
                g.keys as usize > KEYS,
                "keys on the rejoined node: {}",
                g.keys
            );
            break;
        }
        if Instant::now() > deadline {
            let log = new.procs[lost - 1]
                .as_ref()
                .expect("proc")
                .log
                .lock()
                .expect("log")
                .clone();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let l = new.procs[leader - 1]
                .as_ref()
                .expect("proc")
                .log
                .lock()
                .expect("log")
                .clone();
            let ltail: Vec<&str> = l.lines().rev().take(30).collect();
            panic!(
                "node {lost} did not catch up: {:?}\n{}\nleader:\n{}",
                st.map(|s| s.groups),
                tail.join("\n"),
                ltail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let proc = new.procs[lost - 1].as_ref().expect("proc");
    assert!(
        proc.logged("snapshot installed"),
        "no snapshot install logged"
    );
    eprintln!(
        "drill: {KEYS} keys written in {filled:?}, backup saved in {save_ms} ms, \
         total {:?}",
        t0.elapsed()
    );
    c.close().await;
}

/// `backup inspect` reports a flipped byte in the header, one in the middle
/// and a truncated file, with a non-zero exit status; `backup restore`
/// refuses such a file and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_truncated_backup_fails_inspect_and_restore() {
    let cluster = Cluster::start(BIN);
    let c = cluster.client();
    cluster.leader(&c).await;
    c.mkdir(0, "d").await.expect("mkdir");
    for i in 0..200 {
        c.put(0, &format!("d.k{i}"), format!("value {i}").as_bytes())
            .await
            .expect("put");
    }
    c.close().await;
    let files = tempfile::tempdir().expect("tempdir");
    let good = files.path().join("good.backup");
    save(&cluster, &good);
    let (ok, text) = backup_cli(&["inspect", good.to_str().expect("path")]);
    assert!(ok, "{text}");
    assert_eq!(field(&text, "keys"), 201);
    let bytes = std::fs::read(&good).expect("read");
    let len = bytes.len();

    let ports = free_ports(4);
    let cfg = files.path().join("node1.toml");
    std::fs::write(&cfg, cluster_toml(1, &ports[..3], ports[3], None)).expect("config");
    let damaged: [(&str, Vec<u8>, &str); 4] = [
        ("header", flip(&bytes, 20), "header checksum mismatch"),
        ("middle", flip(&bytes, len / 2), "backup checksum mismatch"),
        (
            "last byte",
            flip(&bytes, len - 1),
            "backup checksum mismatch",
        ),
        ("truncated", bytes[..len - 100].to_vec(), "truncated"),
    ];
    for (what, data, says) in damaged {
        let f = files
            .path()
            .join(format!("{}.backup", what.replace(' ', "-")));
        std::fs::write(&f, data).expect("write");
        let (ok, text) = backup_cli(&["inspect", f.to_str().expect("path")]);
        assert!(!ok, "{what}: inspect passed: {text}");
        assert!(text.contains(says), "{what}: {text}");
        let (ok, text) = backup_cli(&[
            "restore",
            f.to_str().expect("path"),
            "--config",
            cfg.to_str().expect("path"),
        ]);
        assert!(!ok, "{what}: restore passed: {text}");
        assert!(
            !files.path().join("node1").join("group-0").exists(),
            "{what}: restore wrote data"
        );
    }
    // The middle of the file is inside the embedded snapshot: inspect names
    // the damaged snapshot chunk as well.
    let f = files.path().join("middle.backup");
    let (_, text) = backup_cli(&["inspect", f.to_str().expect("path")]);
    assert!(text.contains("embedded snapshot"), "{text}");
    // The good file restores; a second restore refuses.
    let (ok, text) = backup_cli(&[
        "restore",
        good.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("path"),
        "--members",
        "1,2,3",
    ]);
    assert!(ok, "{text}");
    assert!(files.path().join("node1/group-0/snapshot").is_dir());
}

fn flip(b: &[u8], at: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    v[at] ^= 0x5a;
    v
}
