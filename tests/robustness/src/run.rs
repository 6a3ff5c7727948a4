//! One fault run: start a cluster, run clients while injecting the seed's
//! fault schedule, stop the faults, check recovery, read every key, check the
//! history.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{Cluster, ClusterSpec};
use crate::faults::{self, FaultKind, Step, Target};
use crate::history::{Check, CheckResult, Linearizable, NoLostWrites};
use crate::membership::{Goal, MemberAdmin, Members, Notes};
use crate::proxy::LinkMode;
use crate::ttl::{self, TtlStats};
use crate::watchlock::{self, LockStats, Locks, WatchControl, WatchOrder};
use crate::workload::{self, ClientMode, ClientStats, Recorder};

/// The key written after the final reads: the watchers stop at its event.
pub const END_MARK: &str = "rb.end";

/// The lease the lock clients ask for.
pub const LOCK_LEASE_MS: u64 = 1500;

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes (3 or 5).
    pub nodes: usize,
    /// Time under faults.
    pub duration: Duration,
    /// Seed of the schedule, the fault targets and the clients.
    pub seed: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Of the clients, how many only read.
    pub readers: usize,
    /// Keys the clients use.
    pub keys: usize,
    /// Watchers of the keys (0 to 2: the first watches their directory, the
    /// second the keys by name).
    pub watchers: usize,
    /// Clients contending on one lock (0: no lock check).
    pub lockers: usize,
    /// Clients of temporary keys (0: none).
    pub ttl_clients: usize,
    /// The `dongting` binary.
    pub binary: PathBuf,
    /// Where the history and the cluster's files are kept on failure (and
    /// the history always).
    pub out_dir: Option<PathBuf>,
    /// Election timeout of the nodes.
    pub elect_timeout_ms: u64,
    /// Time the cluster has to accept writes again once faults stop.
    pub recovery_bound: Duration,
    /// `DONGTING_FAILPOINT` for the servers (planted bugs), if any.
    pub failpoint: Option<String>,
    /// Planted bugs of the client library to switch on, if any.
    pub client_failpoint: Option<String>,
    /// Deadline of each call of the workload's clients.
    pub client_timeout: Duration,
    /// Whether the workload takes a failed write's `retryable` flag at its
    /// word (the write did not happen) instead of counting it as unknown.
    pub trust_retryable: bool,
    /// The fault kinds the schedule draws from, by name (all when empty).
    pub fault_kinds: Vec<String>,
    /// Print each fault as it is injected.
    pub verbose: bool,
}

impl RunOptions {
    /// The flags beyond nodes, duration and seed that a replay needs.
    fn replay_flags(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.failpoint {
            s.push_str(&format!(" --failpoint {f}"));
        }
        if let Some(f) = &self.client_failpoint {
            s.push_str(&format!(" --client-failpoint {f}"));
        }
        if !self.fault_kinds.is_empty() {
            s.push_str(&format!(" --faults {}", self.fault_kinds.join(",")));
        }
        if self.trust_retryable {
            s.push_str(" --trust-retryable");
        }
        s.push_str(&format!(
            " --client-timeout-ms {}",
            self.client_timeout.as_millis()
        ));
        s
    }
}

/// What a run found.
#[derive(Debug)]
pub struct RunReport {
    /// The settings.
    pub options: RunOptions,
    /// The schedule, as planned.
    pub schedule: Vec<Step>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// What happened, one line per injection.
    pub fault_log: Vec<String>,
    /// Client operation counts.
    pub stats: ClientStats,
    /// Lock client counts.
    pub lock_stats: LockStats,
    /// TTL client counts.
    pub ttl_stats: TtlStats,
    /// Time from the end of faults to the first successful write.
    pub recovered_in: Option<Duration>,
    /// Whether every node ended with the original membership (all voting)
    /// once faults stopped; `None` when the run did not get that far.
    pub membership_restored: Option<bool>,
    /// The checks.
    pub checks: Vec<CheckResult>,
    /// Problems outside the checks (crashes, errors of the runner).
    pub problems: Vec<String>,
    /// Where the history was written.
    pub history_file: Option<PathBuf>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunReport {
    /// Whether every check passed and nothing else went wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The one-line verdict.
    pub fn verdict_line(&self) -> String {
        let faults: u64 = self.faults.values().sum();
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("{}={}", c.name, if c.passed { "ok" } else { "FAIL" }))
            .collect();
        format!(
            "robust: {} nodes={} seed={} ops={} (unknown {}, failed reads {}{}){} faults={} \
             recovered={} {}{} in {:.0?}{}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.options.nodes,
            self.options.seed,
            self.stats.ok + self.stats.unknown,
            self.stats.unknown,
            self.stats.failed_reads,
            if self.options.trust_retryable {
                format!(
                    ", writes refused as retryable {}",
                    self.stats.refused_writes
                )
            } else {
                String::new()
            },
            if self.options.ttl_clients > 0 {
                format!(
                    " ttl-ops={} (unknown {}, expiries seen {})",
                    self.ttl_stats.ok + self.ttl_stats.unknown,
                    self.ttl_stats.unknown,
                    self.ttl_stats.expired_seen
                )
            } else {
                String::new()
            },
            faults,
            self.recovered_in
                .map_or("no".to_string(), |d| format!("{:.1}s", d.as_secs_f64())),
            checks.join(" "),
            match self.membership_restored {
                Some(true) => " membership restored",
                Some(false) => " membership NOT restored",
                None => "",
            },
            self.elapsed,
            self.options
                .failpoint
                .as_ref()
                .map_or(String::new(), |f| format!(" failpoint={f}")),
        ) + &self
            .options
            .client_failpoint
            .as_ref()
            .map_or(String::new(), |f| format!(" client-failpoint={f}"))
    }

    /// Everything a failure needs to be reproduced and understood.
    pub fn failure_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "seed {} nodes {} duration {:?}\nreplay: robust --nodes {} --duration {}s --seed {}{}\n",
            self.options.seed,
            self.options.nodes,
            self.options.duration,
            self.options.nodes,
            self.options.duration.as_secs(),
            self.options.seed,
            self.options.replay_flags()
        ));
        s.push_str("schedule:\n");
        for st in &self.schedule {
            s.push_str(&format!(
                "  {:?} hold {} ms, calm {} ms\n",
                st.kind, st.hold_ms, st.calm_ms
            ));
        }
        s.push_str("injected:\n");
        for l in &self.fault_log {
            s.push_str(&format!("  {l}\n"));
        }
        for p in &self.problems {
            s.push_str(&format!("problem: {p}\n"));
        }
        for c in &self.checks {
            s.push_str(&format!(
                "check {}: {} {}\n",
                c.name,
                if c.passed { "ok" } else { "FAILED" },
                c.summary
            ));
            for d in &c.detail {
                s.push_str(&format!("  {d}\n"));
            }
        }
        if let Some(h) = &self.history_file {
            s.push_str(&format!("history: {}\n", h.display()));
        }
        s
    }
}

struct Injector<'a> {
    cluster: &'a mut Cluster,
    rng: SmallRng,
    notes: Notes,
    counts: BTreeMap<&'static str, u64>,
    problems: Vec<String>,
    /// Membership changes of group 0.
    admin: MemberAdmin,
    /// The membership change running beside the other faults, if any.
    member_task: Option<tokio::task::JoinHandle<()>>,
    /// Tells the membership change that faults stopped.
    member_stop: Arc<AtomicBool>,
}

impl Injector<'_> {
    fn note(&mut self, text: String) {
        self.notes.note(text);
    }

    async fn leader(&self) -> Option<usize> {
        let c = self.cluster.client(Duration::from_millis(500));
        let l = self.cluster.leader(&c, Duration::from_secs(3)).await;
        c.close().await;
        l
    }

    async fn pick(&mut self, t: Target) -> usize {
        let n = self.cluster.spec.nodes;
        let leader = self.leader().await;
        match (t, leader) {
            (Target::Leader, Some(l)) => l,
            (Target::Follower, Some(l)) => {
                let others: Vec<usize> = (1..=n).filter(|&i| i != l).collect();
                others[self.rng.random_range(0..others.len())]
            }
            _ => self.rng.random_range(1..=n),
        }
    }

    /// Checks for processes that exited without being killed.
    fn check_crashes(&mut self) {
        for id in 1..=self.cluster.spec.nodes {
            if self.cluster.procs[id - 1].child.is_some() && !self.cluster.running(id) {
                let tail = self.cluster.log_tail(id, 20);
                self.problems.push(format!(
                    "node {id} exited on its own; last log lines:\n{tail}"
                ));
                self.note(format!("node {id} exited on its own: restarting it"));
                self.cluster.procs[id - 1].child = None;
                if let Err(e) = self.cluster.spawn(id) {
                    self.problems.push(e);
                }
            }
        }
    }

    async fn step(&mut self, st: Step) {
        if matches!(st.kind, FaultKind::MembershipChange(_))
            && self.member_task.as_ref().is_some_and(|t| !t.is_finished())
        {
            self.note("membership change skipped: the previous one is still running".into());
            return;
        }
        *self.counts.entry(st.kind.name()).or_default() += 1;
        let hold = Duration::from_millis(st.hold_ms);
        let n = self.cluster.spec.nodes;
        match st.kind {
            FaultKind::Kill(t) | FaultKind::KillTornTail(t) => {
                let id = self.pick(t).await;
                self.cluster.kill(id);
                let mut what = format!("kill -9 node {id} ({t:?})");
                if matches!(st.kind, FaultKind::KillTornTail(_)) {
                    let cut = self.rng.random_range(1..=48);
                    match self.cluster.tear_log_tail(id, cut) {
                        Ok((f, c)) => {
                            what.push_str(&format!(
                                ", cut {c} bytes off {}",
                                f.file_name()
                                    .map(|x| x.to_string_lossy())
                                    .unwrap_or_default()
                            ));
                        }
                        Err(e) => what.push_str(&format!(", no tail cut: {e}")),
                    }
                }
                self.note(what);
                tokio::time::sleep(hold).await;
                if let Err(e) = self.cluster.spawn(id) {
                    self.problems.push(e);
                }
                self.note(format!("restart node {id}"));
                if matches!(st.kind, FaultKind::KillTornTail(_)) {
                    // The cut may have taken records this node had
                    // acknowledged; the rest of the quorum still holds them,
                    // but only until the node has them back.
                    match self.cluster.caught_up(id, Duration::from_secs(30)).await {
                        Some(d) => self.note(format!("node {id} caught up in {d:.1?}")),
                        None => self.problems.push(format!(
                            "node {id} did not catch up within 30 s of its restart"
                        )),
                    }
                }
            }
            FaultKind::Pause(t) => {
                let id = self.pick(t).await;
                self.cluster.signal(id, true);
                self.note(format!("SIGSTOP node {id} ({t:?})"));
                tokio::time::sleep(hold).await;
                self.cluster.signal(id, false);
                self.note(format!("SIGCONT node {id}"));
            }
            FaultKind::TransferLeader => {
                let Some(l) = self.leader().await else {
                    self.note("transfer-leader skipped: no leader".into());
                    return;
                };
                let to = loop {
                    let t = self.rng.random_range(1..=n);
                    if t != l {
                        break t;
                    }
                };
                let (ok, out) = self
                    .cluster
                    .admin(&["transfer-leader", "--to", &to.to_string()]);
                self.note(format!(
                    "transfer leader {l} -> {to}: {}",
                    if ok {
                        "done".to_string()
                    } else {
                        format!("refused ({out})")
                    }
                ));
                tokio::time::sleep(hold).await;
            }
            FaultKind::Isolate(t) => {
                let id = self.pick(t).await;
                let rest: Vec<usize> = (1..=n).filter(|&i| i != id).collect();
                self.cluster.partition(&[id], &rest);
                self.note(format!("isolate node {id} ({t:?})"));
                tokio::time::sleep(hold).await;
                self.cluster.heal();
                self.note("heal".into());
            }
            FaultKind::SplitMinority => {
                let mut ids: Vec<usize> = (1..=n).collect();
                for i in (1..ids.len()).rev() {
                    let j = self.rng.random_range(0..=i);
                    ids.swap(i, j);
                }
                let k = self.rng.random_range(1..=(n - 1) / 2);
                let (a, b) = ids.split_at(k);
                self.cluster.partition(a, b);
                self.note(format!("partition {a:?} | {b:?}"));
                tokio::time::sleep(hold).await;
                self.cluster.heal();
                self.note("heal".into());
            }
            FaultKind::SlowLinks(t) => {
                let id = self.pick(t).await;
                let ms = self.rng.random_range(20..=150);
                for j in (1..=n).filter(|&j| j != id) {
                    self.cluster.set_link(id, j, LinkMode::Delay(ms));
                    self.cluster.set_link(j, id, LinkMode::Delay(ms));
                }
                self.note(format!("delay links of node {id} by {ms} ms"));
                tokio::time::sleep(hold).await;
                self.cluster.heal();
                self.note("heal".into());
            }
            FaultKind::DropConnections(t) => {
                let id = self.pick(t).await;
                self.cluster.drop_links_of(id);
                self.note(format!("close every peer connection of node {id}"));
                tokio::time::sleep(hold).await;
            }
            FaultKind::SnapshotWhilePartitioned => {
                let id = self.pick(Target::Follower).await;
                let rest: Vec<usize> = (1..=n).filter(|&i| i != id).collect();
                self.cluster.partition(&[id], &rest);
                self.note(format!("isolate node {id} (Follower) for a snapshot"));
                tokio::time::sleep(hold / 2).await;
                let (ok, out) = self.cluster.admin(&["snapshot"]);
                self.note(format!(
                    "snapshot on every node: {}",
                    if ok {
                        "done".to_string()
                    } else {
                        format!("failed ({out})")
                    }
                ));
                tokio::time::sleep(hold / 2).await;
                self.cluster.kill(id);
                self.cluster.heal();
                if let Err(e) = self.cluster.spawn(id) {
                    self.problems.push(e);
                }
                self.note(format!("heal, kill -9 and restart node {id}"));
            }
            FaultKind::MembershipChange(t) => {
                let id = self.pick(t).await;
                // Each phase (demotion, promotion) may take a few election
                // timeouts under the other faults.
                let window = Duration::from_millis(6 * self.cluster.spec.elect_timeout_ms);
                let role = match t {
                    Target::Leader => "Leader",
                    Target::Follower => "Follower",
                    Target::Any => "Any",
                };
                self.member_task = Some(tokio::spawn(self.admin.clone().change(
                    id,
                    role,
                    hold,
                    window,
                    self.member_stop.clone(),
                    self.notes.clone(),
                )));
            }
        }
        self.check_crashes();
    }

    /// Ends the membership change running beside the faults, if any, where
    /// it stands.
    async fn end_membership(&mut self) {
        self.member_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.member_task.take()
            && let Err(e) = t.await
        {
            self.problems.push(format!("membership task: {e}"));
        }
    }

    /// Brings group 0 back to every node voting, within `within`.
    async fn restore_membership(&mut self, within: Duration) -> Result<(), String> {
        let all = Members::all_voting(self.cluster.spec.nodes);
        self.note(format!("membership: restore {all}"));
        let started = Instant::now();
        let r = self
            .admin
            .drive(&Goal::Exactly(all), started + within, None, &self.notes)
            .await;
        match r {
            Ok(m) => {
                self.note(format!(
                    "membership: restored ({m}) in {:.1?}",
                    started.elapsed()
                ));
                Ok(())
            }
            Err(e) => Err(format!(
                "the original membership was not restored within {within:?}: {e}"
            )),
        }
    }

    /// Every node's own view of group 0's membership must be the original
    /// one, not joint; returns the nodes whose view is not.
    async fn membership_views(&self) -> Vec<String> {
        let all = Members::all_voting(self.cluster.spec.nodes);
        let c = self.admin.client();
        let views = self.admin.statuses(&c).await;
        c.close().await;
        let mut wrong = Vec::new();
        for (i, g) in views.into_iter().enumerate() {
            match g {
                None => wrong.push(format!("node {}: no answer", i + 1)),
                Some(g) => {
                    let m = Members::new(&g.members, &g.observers);
                    if m != all || g.joint.is_some() {
                        wrong.push(format!(
                            "node {}: {m}{}",
                            i + 1,
                            g.joint.map_or(String::new(), |j| format!(
                                ", joint at {}",
                                j.prepare_index
                            ))
                        ));
                    }
                }
            }
        }
        wrong
    }

    /// Ends every fault: links pass, paused nodes continue, dead nodes start.
    fn stop_all(&mut self) {
        self.cluster.heal();
        for id in 1..=self.cluster.spec.nodes {
            if self.cluster.procs[id - 1].paused {
                self.cluster.signal(id, false);
            }
        }
        self.check_crashes();
        for id in 1..=self.cluster.spec.nodes {
            if self.cluster.procs[id - 1].child.is_none()
                && let Err(e) = self.cluster.spawn(id)
            {
                self.problems.push(e);
            }
        }
        self.note("faults stopped".into());
    }
}

/// Runs one fault run to its verdict.
pub async fn run(opts: RunOptions) -> RunReport {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("dongting-robust-")
        .tempdir()
        .ok();
    let dir = match (&opts.out_dir, &tmp) {
        (Some(d), _) => d.join(format!("run-{}n-seed{}", opts.nodes, opts.seed)),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => std::env::temp_dir().join(format!("dongting-robust-{}", opts.seed)),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let kinds = faults::kinds_named(&opts.fault_kinds);
    let schedule = faults::schedule_of(
        opts.seed,
        opts.duration.as_millis() as u64,
        opts.elect_timeout_ms,
        kinds.as_deref().unwrap_or(&[]),
    );
    let mut report = RunReport {
        options: opts.clone(),
        schedule: schedule.clone(),
        faults: BTreeMap::new(),
        fault_log: Vec::new(),
        stats: ClientStats::default(),
        lock_stats: LockStats::default(),
        ttl_stats: TtlStats::default(),
        recovered_in: None,
        membership_restored: None,
        checks: Vec::new(),
        problems: Vec::new(),
        history_file: None,
        elapsed: Duration::ZERO,
    };
    if let Err(e) = kinds {
        report.problems.push(e);
        return report;
    }
    if let Some(f) = &opts.client_failpoint
        && let Err(e) = dongting_client::failpoints::enable(f)
    {
        report.problems.push(e);
        return report;
    }
    let spec = ClusterSpec {
        nodes: opts.nodes,
        binary: opts.binary.clone(),
        dir: dir.clone(),
        elect_timeout_ms: opts.elect_timeout_ms,
        snapshot_seconds: 5,
        env: opts
            .failpoint
            .as_ref()
            .map(|f| vec![("DONGTING_FAILPOINT".to_string(), f.clone())])
            .unwrap_or_default(),
    };
    let mut cluster = match Cluster::start(spec).await {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(format!("cluster did not start: {e}"));
            report.elapsed = started.elapsed();
            return report;
        }
    };
    let setup = cluster.client(Duration::from_secs(10));
    let mut dir_index = 0;
    for d in [workload::DIR, watchlock::LOCK_DIR] {
        match setup.mkdir(0, d).await {
            Ok(w) if d == workload::DIR => dir_index = w.index,
            Ok(_) => {}
            Err(e) => {
                report.problems.push(format!("mkdir {d}: {e}"));
                report.elapsed = started.elapsed();
                return report;
            }
        }
    }
    setup.close().await;
    let rec = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let keys = Arc::new(workload::keys(opts.keys));
    // Watchers first, from the directory's creation: every write of the
    // workload is after it.
    let wctl = Arc::new(WatchControl::default());
    let mut watchers = Vec::new();
    for w in 1..=opts.watchers.min(2) as u64 {
        let watched = if w == 1 {
            vec![workload::DIR.to_string()]
        } else {
            let mut k = keys.to_vec();
            k.push(END_MARK.to_string());
            k
        };
        watchers.push(tokio::spawn(watchlock::run_watcher(
            w,
            cluster.client(Duration::from_secs(3)),
            watched,
            keys.clone(),
            dir_index,
            rec.clone(),
            wctl.clone(),
        )));
    }
    let mut lockers = Vec::new();
    for l in 1..=opts.lockers as u64 {
        lockers.push(tokio::spawn(watchlock::run_locker(
            l,
            cluster.client(Duration::from_secs(3)),
            Duration::from_millis(LOCK_LEASE_MS),
            opts.seed,
            rec.clone(),
            stop.clone(),
        )));
    }
    let mut ttl_tasks = Vec::new();
    for t in 1..=opts.ttl_clients as u64 {
        ttl_tasks.push(tokio::spawn(ttl::run_ttl_client(
            t,
            cluster.client(Duration::from_secs(3)),
            opts.seed,
            rec.clone(),
            stop.clone(),
        )));
    }
    let mut tasks = Vec::new();
    for c in 1..=opts.clients as u64 {
        // Each client its own connections and session.
        let client = cluster.client(opts.client_timeout);
        let mode = ClientMode {
            reader: c as usize > opts.clients - opts.readers.min(opts.clients - 1),
            trust_retryable: opts.trust_retryable,
        };
        tasks.push(tokio::spawn(workload::run_client(
            c,
            mode,
            client,
            keys.clone(),
            opts.seed,
            rec.clone(),
            stop.clone(),
        )));
    }
    let admin = MemberAdmin::of(&cluster);
    let mut inj = Injector {
        cluster: &mut cluster,
        rng: SmallRng::seed_from_u64(opts.seed.rotate_left(17) ^ 0x5eed),
        notes: Notes::new(rec.clone(), opts.verbose),
        counts: BTreeMap::new(),
        problems: Vec::new(),
        admin,
        member_task: None,
        member_stop: Arc::new(AtomicBool::new(false)),
    };
    let fault_end = Instant::now() + opts.duration;
    for st in &schedule {
        if Instant::now() >= fault_end {
            break;
        }
        inj.step(*st).await;
        tokio::time::sleep(Duration::from_millis(st.calm_ms)).await;
        inj.check_crashes();
    }
    inj.end_membership().await;
    inj.stop_all();
    // Recovery: a write must succeed within the bound.
    let stopped_at = Instant::now();
    let probe = inj.cluster.client(Duration::from_secs(2));
    loop {
        if probe
            .put(0, &format!("{}.probe", workload::DIR), b"p")
            .await
            .is_ok()
        {
            report.recovered_in = Some(stopped_at.elapsed());
            break;
        }
        if stopped_at.elapsed() >= opts.recovery_bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if report.recovered_in.is_none() {
        inj.problems.push(format!(
            "the cluster accepted no write within {:?} of the faults stopping",
            opts.recovery_bound
        ));
    } else {
        // The original membership comes back before the catch-up check, so
        // that every node catches up as a voter.
        let restored = inj.restore_membership(opts.recovery_bound).await;
        if let Err(e) = &restored {
            inj.problems.push(e.clone());
        }
        // Every node, not only a quorum, must catch up: a follower stuck
        // behind is invisible to the clients (the quorum serves them) but
        // stalls the watch streams registered on it.
        for id in 1..=opts.nodes {
            if inj
                .cluster
                .caught_up(id, opts.recovery_bound)
                .await
                .is_none()
            {
                let c = inj.cluster.client(Duration::from_millis(500));
                let state = inj.cluster.status(&c, id).await.and_then(|s| {
                    s.groups.iter().find(|g| g.group_id == 0).map(|g| {
                        format!(
                            "role {:?}, term {}, leader {}, commit {}, applied {}, last log {}",
                            g.role,
                            g.term,
                            g.leader_id,
                            g.commit_index,
                            g.applied_index,
                            g.last_log_index
                        )
                    })
                });
                c.close().await;
                inj.problems.push(format!(
                    "node {id} did not catch up with the leader within {:?} of the faults \
                     stopping (its status: {})",
                    opts.recovery_bound,
                    state.unwrap_or_else(|| "no answer".to_string())
                ));
            }
        }
        let wrong = inj.membership_views().await;
        if !wrong.is_empty() {
            inj.problems.push(format!(
                "not every node has the original membership ({}): {}",
                Members::all_voting(opts.nodes),
                wrong.join("; ")
            ));
        }
        report.membership_restored = Some(restored.is_ok() && wrong.is_empty());
    }
    // A little traffic on the healed cluster, then the clients stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => {
                report.stats.ok += s.ok;
                report.stats.unknown += s.unknown;
                report.stats.failed_reads += s.failed_reads;
                report.stats.refused_writes += s.refused_writes;
            }
            Ok(Err(e)) => inj.problems.push(format!("client error: {e}")),
            Err(e) => inj.problems.push(format!("client task: {e}")),
        }
    }
    for t in ttl_tasks {
        match t.await {
            Ok(Ok(s)) => {
                report.ttl_stats.ok += s.ok;
                report.ttl_stats.unknown += s.unknown;
                report.ttl_stats.expired_seen += s.expired_seen;
            }
            Ok(Err(e)) => inj.problems.push(format!("TTL client error: {e}")),
            Err(e) => inj.problems.push(format!("TTL client task: {e}")),
        }
    }
    for t in lockers {
        match t.await {
            Ok(Ok(s)) => {
                report.lock_stats.holds += s.holds;
                report.lock_stats.refused += s.refused;
                report.lock_stats.failed += s.failed;
            }
            Ok(Err(e)) => inj.problems.push(format!("lock client error: {e}")),
            Err(e) => inj.problems.push(format!("lock client task: {e}")),
        }
    }
    match workload::final_reads(&probe, &keys, &rec, opts.recovery_bound).await {
        // The watchers stop once their streams pass a write made after the
        // final reads (an event, not a server heartbeat, brings them there).
        Ok(_) => match probe.put(0, END_MARK, b"end").await {
            Ok(w) => wctl.target.store(w.index, Ordering::Release),
            Err(e) => {
                inj.problems.push(format!("put {END_MARK}: {e}"));
                wctl.give_up.store(true, Ordering::Release);
            }
        },
        Err(e) => {
            inj.problems.push(e);
            wctl.give_up.store(true, Ordering::Release);
        }
    }
    let give_up_at = Instant::now() + opts.recovery_bound;
    for t in watchers {
        let left = give_up_at.saturating_duration_since(Instant::now());
        let mut t = t;
        let r = match tokio::time::timeout(left, &mut t).await {
            Ok(r) => r,
            Err(_) => {
                wctl.give_up.store(true, Ordering::Release);
                t.await
            }
        };
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => inj.problems.push(e),
            Err(e) => inj.problems.push(format!("watcher task: {e}")),
        }
    }
    inj.check_crashes();
    report.faults = std::mem::take(&mut inj.counts);
    report.fault_log = inj.notes.take();
    report.problems.append(&mut inj.problems);
    drop(inj);
    cluster.shutdown();
    let history = rec.history();
    let mut checks: Vec<Box<dyn Check>> =
        vec![Box::new(Linearizable::default()), Box::new(NoLostWrites)];
    if opts.watchers > 0 {
        checks.push(Box::new(WatchOrder));
    }
    if opts.lockers > 0 {
        checks.push(Box::new(Locks));
    }
    report.checks = checks.iter().map(|c| c.check(&history)).collect();
    // Keep the history always when asked, and on failure in any case.
    let keep = opts.out_dir.is_some() || !report.passed();
    if keep {
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("history.jsonl");
        match history.write_jsonl(&file) {
            Ok(()) => report.history_file = Some(file),
            Err(e) => report.problems.push(format!("history not written: {e}")),
        }
        if report.passed() {
            // The history is the record; the nodes' data is not needed.
            for id in 1..=opts.nodes {
                let _ = std::fs::remove_dir_all(dir.join(format!("node{id}")));
            }
        } else {
            let _ = std::fs::write(dir.join("failure.txt"), report.failure_text());
            if let Some(t) = tmp {
                // Keep the cluster's files for the post-mortem.
                let _ = t.keep();
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}
