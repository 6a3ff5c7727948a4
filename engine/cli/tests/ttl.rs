//! Temporary nodes with three `dongting server` processes: a node expires
//! after its TTL although the leader that armed it was killed, and the
//! put-temp / mkdir-temp / update-ttl commands with the owner check.

mod common;

use common::*;

fn kv_cli(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = cluster.kv_command().args(args).output().expect("run kv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_node_expires_on_time_across_a_leader_kill() {
    let mut cluster = Cluster::start(BIN);
    let c = cluster.client();
    let first = cluster.leader(&c).await;
    const TTL_MS: u64 = 4_000;
    let sent = wall_ms();
    let w = c
        .put_temp(0, "session", b"alive", Duration::from_millis(TTL_MS))
        .await
        .expect("put temp");
    let dongting_kv::Outcome::Deadline { deadline_ms } = w.outcome else {
        panic!("put_temp answered {:?}", w.outcome);
    };
    // The deadline is the armed leader's clock plus the TTL (same host clock here).
    assert!(deadline_ms >= sent + TTL_MS && deadline_ms <= wall_ms() + TTL_MS);

    // The leader that armed the TTL dies; a new one takes over from the state.
    cluster.procs[first - 1] = None;
    let second = cluster.leader(&c).await;
    assert_ne!(first, second);
    let n = c.get(0, "session").await.expect("get").data;
    if wall_ms() + 200 < deadline_ms {
        let n = n.expect("the node outlives the old leader until its deadline");
        assert_eq!(n.ttl.map(|t| t.deadline_ms), Some(deadline_ms));
    }
    let limit = Instant::now() + Duration::from_secs(20);
    loop {
        let now = wall_ms();
        match c.get(0, "session").await.expect("get").data {
            Some(_) => {
                assert!(
                    Instant::now() < limit,
                    "the node outlived its deadline by {} ms",
                    now.saturating_sub(deadline_ms)
                );
            }
            None => {
                // Gone: never before the deadline the first leader armed.
                assert!(
                    now >= deadline_ms,
                    "the node vanished {} ms before its deadline",
                    deadline_ms - now
                );
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_and_rearms_temporary_nodes_for_their_owner_only() {
    let cluster = Cluster::start(BIN);
    let c = cluster.client();
    cluster.leader(&c).await;

    let (ok, out, err) = kv_cli(
        &cluster,
        &[
            "mkdir-temp",
            "jobs",
            "--ttl-ms",
            "30000",
            "--client-id",
            "0x77",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("client_id=0x77"), "{out}");
    let (ok, out, err) = kv_cli(
        &cluster,
        &[
            "put-temp",
            "worker",
            "w1",
            "--ttl-ms",
            "30000",
            "--client-id",
            "0x77",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("deadline_ms="), "{out}");
    let read = c.get(0, "worker").await.expect("get");
    let before = read
        .data
        .as_ref()
        .and_then(|n| n.ttl)
        .unwrap_or_else(|| panic!("not temporary: {read:?} after {out}"));
    assert_eq!(before.owner, 0x77);

    // Another session may not touch it; the node is unchanged.
    let (ok, out, err) = kv_cli(
        &cluster,
        &[
            "update-ttl",
            "worker",
            "--ttl-ms",
            "60000",
            "--client-id",
            "0x78",
        ],
    );
    assert!(!ok, "{out}");
    assert!(err.contains("NOT_OWNER"), "{err}");
    let (ok, _, err) = kv_cli(&cluster, &["rm", "worker"]);
    assert!(!ok);
    assert!(err.contains("NOT_OWNER"), "{err}");
    let same = c
        .get(0, "worker")
        .await
        .expect("get")
        .data
        .and_then(|n| n.ttl);
    assert_eq!(same, Some(before));

    // Nor may this test's own client session.
    let e = c
        .update_ttl(0, "worker", Duration::from_secs(60))
        .await
        .expect_err("not the owner");
    assert!(
        matches!(
            e,
            ClientError::Kv {
                error: KvError::NotOwner(_),
                ..
            }
        ),
        "{e}"
    );

    // The owner re-arms it.
    let (ok, out, err) = kv_cli(
        &cluster,
        &[
            "update-ttl",
            "worker",
            "--ttl-ms",
            "60000",
            "--client-id",
            "0x77",
        ],
    );
    assert!(ok, "{out}{err}");
    let after = c
        .get(0, "worker")
        .await
        .expect("get")
        .data
        .and_then(|n| n.ttl)
        .expect("temporary");
    assert!(after.deadline_ms >= before.deadline_ms + 20_000);

    // Bad input: a zero TTL and a zero client id are refused.
    let (ok, _, err) = kv_cli(
        &cluster,
        &[
            "update-ttl",
            "worker",
            "--ttl-ms",
            "0",
            "--client-id",
            "0x77",
        ],
    );
    assert!(!ok);
    assert!(err.contains("INVALID_TTL"), "{err}");
    let (ok, _, err) = kv_cli(
        &cluster,
        &["put-temp", "w2", "x", "--ttl-ms", "100", "--client-id", "0"],
    );
    assert!(!ok);
    assert!(err.contains("client id 0"), "{err}");
    c.close().await;
}
