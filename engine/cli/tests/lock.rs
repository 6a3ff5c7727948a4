//! Distributed locks with three `dongting server` processes: `dongting kv lock`
//! processes contend for one lock while some holders are killed, and a
//! checker proves the holds never overlap and the fencing tokens increase;
//! an auto-renewal lock reports the loss when its cluster stops answering.

mod common;

use std::os::unix::process::CommandExt;

use common::*;

const LEASE_MS: u64 = 1_500;

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// One hold as the holders recorded it: token, start, end (None: killed).
#[derive(Debug, Clone, Copy)]
struct Hold {
    token: u64,
    start_ns: u128,
    end_ns: Option<u128>,
}

fn read_holds(path: &Path) -> Vec<Hold> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut holds: Vec<Hold> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "bad record line {line:?}");
        let token: u64 = f[1].parse().expect("token");
        let t: u128 = f[2].parse().expect("time");
        match f[0] {
            "start" => holds.push(Hold {
                token,
                start_ns: t,
                end_ns: None,
            }),
            "end" => {
                let h = holds
                    .iter_mut()
                    .find(|h| h.token == token)
                    .expect("end without start");
                h.end_ns = Some(t);
            }
            other => panic!("bad record {other}"),
        }
    }
    holds
}

/// The checker: ordered by fencing token, tokens strictly increase, every
/// hold starts after the previous one ended, and a hold whose process was
/// killed (`killed_ns`) is followed only after its lease could have run out.
fn check_holds(holds: &[Hold], kills: &[(u64, u128)]) {
    let mut by_token = holds.to_vec();
    by_token.sort_by_key(|h| h.token);
    let mut by_start = holds.to_vec();
    by_start.sort_by_key(|h| h.start_ns);
    assert_eq!(
        by_token.iter().map(|h| h.token).collect::<Vec<_>>(),
        by_start.iter().map(|h| h.token).collect::<Vec<_>>(),
        "tokens do not increase with acquisition time"
    );
    for w in by_token.windows(2) {
        assert!(w[0].token < w[1].token, "token {} repeated", w[0].token);
        let end = match w[0].end_ns {
            Some(e) => e,
            None => {
                let killed = kills
                    .iter()
                    .find(|(t, _)| *t == w[0].token)
                    .map(|(_, k)| *k)
                    .unwrap_or_else(|| panic!("hold {} has no end and was not killed", w[0].token));
                // Renewed at most a third of the lease before the kill.
                killed + u128::from(LEASE_MS * 2 / 3) * 1_000_000
            }
        };
        assert!(
            w[1].start_ns >= end,
            "hold {} started {} ms before hold {} ended",
            w[1].token,
            (end - w[1].start_ns) / 1_000_000,
            w[0].token
        );
    }
}

fn lock_proc(cluster: &Cluster, record: &Path, hold_s: &str) -> (Child, Arc<Mutex<String>>) {
    let script = format!(
        "echo start $DONGTING_FENCING_TOKEN $(date +%s%N) >> {r}; sleep {hold_s}; \
         echo end $DONGTING_FENCING_TOKEN $(date +%s%N) >> {r}",
        r = record.display()
    );
    let mut child = cluster
        .kv_command()
        .args(["lock", "locks.job", "--lease-ms", &LEASE_MS.to_string()])
        .args(["--wait-ms", "60000", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: killing the group kills the command too.
        .process_group(0)
        .spawn()
        .expect("spawn kv lock");
    let err = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let e = err.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            e.lock().expect("err").push_str(&(line + "\n"));
        }
    });
    (child, err)
}

fn kill_group(child: &Child, signal: &str) {
    send_signal(child.id(), signal, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_lock_processes_never_overlap_while_holders_are_killed() {
    let cluster = Cluster::start(BIN);
    let c = cluster.client();
    cluster.leader(&c).await;
    c.mkdir(0, "locks").await.expect("mkdir");
    let record = cluster.dir.path().join("holds.log");

    let mut procs: Vec<Option<(Child, Arc<Mutex<String>>)>> = (0..6)
        .map(|_| Some(lock_proc(&cluster, &record, "0.3")))
        .collect();
    let mut kills: Vec<(u64, u128)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    // Kill a holder while it holds, twice, then let the rest finish.
    while kills.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "holders never seen: {:?}",
            read_holds(&record)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let holds = read_holds(&record);
        let Some(open) = holds
            .iter()
            .find(|h| h.end_ns.is_none() && !kills.iter().any(|(t, _)| *t == h.token))
        else {
            continue;
        };
        let said = format!("fencing token {}\n", open.token);
        let Some(victim) = procs.iter().position(|p| {
            p.as_ref()
                .is_some_and(|(_, err)| err.lock().expect("err").contains(&said))
        }) else {
            continue;
        };
        let (mut ch, _) = procs[victim].take().expect("victim");
        kill_group(&ch, "-KILL");
        kills.push((open.token, now_ns()));
        let _ = ch.wait();
    }
    for (p, err) in procs.iter_mut().flatten() {
        let status = p.wait().expect("wait");
        assert!(
            status.success(),
            "a lock process failed: {status}: {}",
            err.lock().expect("err")
        );
    }
    let holds = read_holds(&record);
    assert_eq!(holds.len(), 6, "holds: {holds:?}");
    check_holds(&holds, &kills);

    // The command's status is the CLI's; a lock that is held fails at once.
    let servers: Vec<String> = cluster.service.iter().map(|a| a.to_string()).collect();
    let st = Command::new(BIN)
        .args(["kv", "--servers", &servers.join(","), "lock", "locks.job"])
        .args(["--", "sh", "-c", "exit 7"])
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert_eq!(st.code(), Some(7));
    let l = c.create_lock(0, "locks.job").expect("lock");
    let e = l.update_lease(1_000).await.expect_err("not held");
    assert!(
        matches!(
            e,
            ClientError::Kv {
                error: KvError::NotFound(_),
                ..
            }
        ),
        "{e}"
    );
    l.try_lock(10_000, 0)
        .await
        .expect("try")
        .expect("free again");
    let out = Command::new(BIN)
        .args(["kv", "--servers", &servers.join(","), "lock", "locks.job"])
        .args(["--", "true"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOT_ACQUIRED"), "{err}");
    l.unlock().await.expect("unlock");
    c.close().await;
}

fn signal_all(cluster: &Cluster, signal: &str) {
    for p in cluster.procs.iter().flatten() {
        send_signal(p.child.id(), signal, false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_renewal_lock_reports_the_loss_when_cut_off() {
    let cluster = Cluster::start(BIN);
    let c = cluster.client();
    cluster.leader(&c).await;
    c.mkdir(0, "locks").await.expect("mkdir");
    let events = Arc::new(LockEvents::default());
    let auto = c
        .create_auto_renewal_lock(
            0,
            "locks.auto",
            Duration::from_millis(LEASE_MS),
            events.clone(),
        )
        .expect("auto lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.0.lock().expect("events").is_empty() {
        assert!(Instant::now() < deadline, "never acquired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(LEASE_MS)).await;
    assert_eq!(events.0.lock().expect("events").len(), 1, "renewals failed");

    // Freeze every node: renewals go unanswered and the lease runs out here.
    let lease_left = auto.lock().lease_rest_millis();
    let stopped = Instant::now();
    signal_all(&cluster, "-STOP");
    let limit = stopped + Duration::from_millis(LEASE_MS + 1_000);
    let lost_at = loop {
        let ev = events.0.lock().expect("events").clone();
        if let Some((t, None)) = ev.last() {
            break *t;
        }
        if Instant::now() > limit {
            signal_all(&cluster, "-CONT");
            panic!("on_lost not reported: {ev:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    signal_all(&cluster, "-CONT");
    // A renewal sent just before the stop may have been answered: the lease
    // then lasts a full lease from that renewal, and no longer.
    let after = lost_at.duration_since(stopped);
    assert!(
        after <= Duration::from_millis(LEASE_MS + 200),
        "on_lost came {after:?} after the stop (lease {LEASE_MS} ms, {lease_left} ms left before it)"
    );

    // Once the cluster answers again the lock is acquired again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = events.0.lock().expect("events").clone();
        if ev.len() >= 3 {
            assert!(matches!(ev[2], (_, Some(t)) if t >= ev[0].1.unwrap_or(0)));
            break;
        }
        assert!(Instant::now() < deadline, "not re-acquired: {ev:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    auto.close().await.expect("close");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_queued_on_a_killed_leader_still_learns_it_was_promoted() {
    let mut cluster = Cluster::start(BIN);
    let (a, b) = (cluster.client(), cluster.client());
    let first = cluster.leader(&a).await;
    a.mkdir(0, "locks").await.expect("mkdir");
    let la = a.create_lock(0, "locks.failover").expect("lock a");
    let lb = b.create_lock(0, "locks.failover").expect("lock b");
    let t1 = la
        .try_lock(30_000, 0)
        .await
        .expect("try a")
        .expect("a holds");

    // b queues through the first leader, which alone knows b's connection.
    let lb2 = lb.clone();
    let waiter = tokio::spawn(async move { lb2.try_lock(30_000, 40_000).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = a.lock_info(0, "locks.failover").await.expect("info");
        if info.data.is_some_and(|l| l.waiters == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "b never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.procs[first - 1] = None;
    let second = cluster.leader(&a).await;
    assert_ne!(first, second);
    // The release on the new leader promotes b; no node has b's connection,
    // so b learns it from its own lock-info re-check.
    la.unlock().await.expect("unlock");
    let released = Instant::now();
    let t2 = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("b never learned the outcome")
        .expect("join")
        .expect("try b")
        .expect("b holds");
    assert!(t2 > t1);
    assert!(
        released.elapsed() <= dongting_client::RECHECK_INTERVAL + Duration::from_secs(5),
        "took {:?}",
        released.elapsed()
    );
    assert!(lb.is_held_by_current_client());
    lb.unlock().await.expect("unlock b");
    a.close().await;
    b.close().await;
}
