//! Membership changes of group 0 through `dongting admin`: a voting member
//! demoted to observer and promoted back with the two-phase change
//! (`prepare`, then `commit --prepare-index N`), retried under faults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dongting_client::{KvClient, KvClientConfig};
use dongting_proto::status::{GroupStatus, Role};

use crate::cluster::Cluster;
use crate::workload::Recorder;

/// Voting members and observers, each sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Voting members.
    pub members: Vec<u32>,
    /// Observers.
    pub observers: Vec<u32>,
}

impl Members {
    /// From unsorted lists.
    pub fn new(members: &[u32], observers: &[u32]) -> Members {
        let mut m = members.to_vec();
        let mut o = observers.to_vec();
        m.sort_unstable();
        o.sort_unstable();
        Members {
            members: m,
            observers: o,
        }
    }

    /// Nodes 1..=n, all voting.
    pub fn all_voting(n: usize) -> Members {
        Members::new(&(1..=n as u32).collect::<Vec<_>>(), &[])
    }

    /// Nodes 1..=n, all voting but `observer`.
    pub fn demoted(n: usize, observer: usize) -> Members {
        let m: Vec<u32> = (1..=n as u32).filter(|&i| i != observer as u32).collect();
        Members::new(&m, &[observer as u32])
    }

    fn args(&self) -> Vec<String> {
        let list = |v: &[u32]| {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut a = vec![
            "prepare".to_string(),
            "--members".to_string(),
            list(&self.members),
        ];
        if !self.observers.is_empty() {
            a.push("--observers".to_string());
            a.push(list(&self.observers));
        }
        a
    }
}

impl std::fmt::Display for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "members {:?} observers {:?}",
            self.members, self.observers
        )
    }
}

/// Fault notes shared by the injector and the membership task: each goes to
/// the history, to the run's fault log and, when verbose, to stderr.
#[derive(Clone)]
pub struct Notes {
    rec: Arc<Recorder>,
    log: Arc<Mutex<Vec<String>>>,
    verbose: bool,
}

impl Notes {
    /// Notes recorded in `rec`.
    pub fn new(rec: Arc<Recorder>, verbose: bool) -> Notes {
        Notes {
            rec,
            log: Arc::new(Mutex::new(Vec::new())),
            verbose,
        }
    }

    /// Records one note.
    pub fn note(&self, text: String) {
        let at = self.rec.now() as f64 / 1e9;
        if self.verbose {
            eprintln!("  [{at:>7.2}s] {text}");
        }
        self.rec.fault(text.clone());
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{at:.2}s {text}"));
    }

    /// Every note so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What the membership admin needs of the cluster, detached from it so that
/// a change can run beside the other faults.
#[derive(Debug, Clone)]
pub struct MemberAdmin {
    binary: PathBuf,
    replicate: Vec<SocketAddr>,
    service: Vec<SocketAddr>,
    elect_timeout_ms: u64,
}

/// Where a drive should bring the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// This configuration, committed.
    Exactly(Members),
    /// Any configuration, committed and not joint (a pending change is
    /// aborted).
    Settled,
}

impl MemberAdmin {
    /// The admin of `cluster`'s group 0.
    pub fn of(cluster: &Cluster) -> MemberAdmin {
        MemberAdmin {
            binary: cluster.spec.binary.clone(),
            replicate: cluster.replicate.clone(),
            service: cluster.service.clone(),
            elect_timeout_ms: cluster.spec.elect_timeout_ms,
        }
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.service.len()
    }

    /// A client for status requests.
    pub fn client(&self) -> KvClient {
        let mut cfg = KvClientConfig::new(self.service.clone());
        cfg.timeout = Duration::from_millis(500);
        KvClient::new(cfg)
    }

    /// Group 0's status on every node that answers (index = id - 1).
    pub async fn statuses(&self, c: &KvClient) -> Vec<Option<GroupStatus>> {
        let mut calls = Vec::new();
        for &addr in &self.service {
            let c = c.clone();
            calls.push(tokio::spawn(async move {
                c.server_status(addr)
                    .await
                    .ok()
                    .and_then(|s| s.groups.into_iter().find(|g| g.group_id == 0))
            }));
        }
        let mut out = Vec::new();
        for call in calls {
            out.push(call.await.ok().flatten());
        }
        out
    }

    /// The node leading group 0 with the highest term, and its view of the
    /// group. A deposed leader that has not heard of the new term yet loses
    /// to the new one.
    pub async fn leader_view(&self, c: &KvClient) -> Option<(usize, GroupStatus)> {
        self.statuses(c)
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (i + 1, g)))
            .filter(|(_, g)| g.role == Some(Role::Leader) && g.ready)
            .max_by_key(|(_, g)| g.term)
    }

    /// Runs `dongting admin --servers <node's replicate address> <args>` off
    /// the runtime's threads; returns success and the output.
    async fn admin(&self, node: usize, args: Vec<String>) -> (bool, String) {
        let binary = self.binary.clone();
        let server = self.replicate[node - 1].to_string();
        let timeout = self.elect_timeout_ms.max(500).to_string();
        let r = tokio::task::spawn_blocking(move || {
            Command::new(&binary)
                .args(["admin", "--servers", &server, "--group", "0"])
                .args(["--timeout-ms", &timeout])
                .args(&args)
                .output()
        })
        .await;
        match r {
            Ok(Ok(out)) => {
                let text = [
                    String::from_utf8_lossy(&out.stdout).trim().to_string(),
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
                (out.status.success(), text)
            }
            Ok(Err(e)) => (false, format!("cannot run {}: {e}", self.binary.display())),
            Err(e) => (false, format!("admin task: {e}")),
        }
    }

    /// Brings group 0 to `goal`, reading the leader's view before every
    /// step: a joint configuration towards the goal is committed, one
    /// towards anything else is aborted, and a settled configuration other
    /// than the goal gets a prepare. Failed steps (no leader, `NotApplied`,
    /// timeouts, a leader lost between the prepare and the commit) are
    /// retried with a backoff from 100 ms to one election timeout;
    /// `AlreadyPending`/`AlreadyDone` answers need nothing special, as the
    /// next view shows where the change stands. Done once the leader's
    /// configuration entry is committed; gives up at `deadline`, or when
    /// `stop` is set, with the last obstacle.
    pub async fn drive(
        &self,
        goal: &Goal,
        deadline: Instant,
        stop: Option<&AtomicBool>,
        notes: &Notes,
    ) -> Result<Members, String> {
        let c = self.client();
        let r = self.drive_with(&c, goal, deadline, stop, notes).await;
        c.close().await;
        r
    }

    async fn drive_with(
        &self,
        c: &KvClient,
        goal: &Goal,
        deadline: Instant,
        stop: Option<&AtomicBool>,
        notes: &Notes,
    ) -> Result<Members, String> {
        let first_backoff = Duration::from_millis(100);
        let max_backoff = Duration::from_millis(self.elect_timeout_ms.max(200));
        let mut backoff = first_backoff;
        let mut last = "no leader".to_string();
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Err(format!("faults stopped ({last})"));
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            // None: a step failed, wait with the backoff.
            let mut wait = None;
            match self.leader_view(c).await {
                None => last = "no leader".to_string(),
                Some((leader, g)) => {
                    let current = Members::new(&g.members, &g.observers);
                    let step: Option<(String, Vec<String>)> = match (&g.joint, goal) {
                        // Only one configuration entry may be uncommitted: a
                        // commit or abort sent before the prepare commits is
                        // refused (another change in progress).
                        (Some(j), _) if g.commit_index < j.prepare_index => {
                            last = format!(
                                "prepare at {} not committed yet (commit {})",
                                j.prepare_index, g.commit_index
                            );
                            wait = Some(first_backoff);
                            None
                        }
                        (Some(j), Goal::Exactly(t))
                            if Members::new(&j.members, &j.observers) == *t =>
                        {
                            Some((
                                format!("commit --prepare-index {}", j.prepare_index),
                                vec![
                                    "commit".to_string(),
                                    "--prepare-index".to_string(),
                                    j.prepare_index.to_string(),
                                ],
                            ))
                        }
                        (Some(j), _) => Some((
                            format!(
                                "abort (joint at {} towards {})",
                                j.prepare_index,
                                Members::new(&j.members, &j.observers)
                            ),
                            vec!["abort".to_string()],
                        )),
                        (None, Goal::Exactly(t)) if current != *t => {
                            Some((format!("prepare {t}"), t.args()))
                        }
                        (None, _) => {
                            if g.membership_index <= g.commit_index {
                                return Ok(current);
                            }
                            last = format!(
                                "configuration entry {} not committed yet (commit {})",
                                g.membership_index, g.commit_index
                            );
                            wait = Some(first_backoff);
                            None
                        }
                    };
                    if let Some((what, args)) = step {
                        let (ok, out) = self.admin(leader, args).await;
                        notes.note(format!(
                            "membership: {what} on leader {leader}: {}",
                            if ok {
                                out.clone()
                            } else {
                                format!("failed ({out})")
                            }
                        ));
                        if ok {
                            backoff = first_backoff;
                            wait = Some(Duration::from_millis(20));
                        } else {
                            last = format!("{what} failed: {out}");
                        }
                    }
                }
            }
            let wait = wait.unwrap_or_else(|| {
                let w = backoff;
                backoff = (backoff * 2).min(max_backoff);
                w
            });
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(left)).await;
        }
    }

    /// One membership fault: demote `node` to observer within `window`,
    /// keep it there for `hold` while other faults run, then promote it back
    /// within another `window`. A phase that does not finish in its window
    /// is settled (its pending change aborted) within one more window. Ends
    /// early, leaving the group as it is, once `stop` is set: the runner
    /// restores the membership after the faults.
    pub async fn change(
        self,
        node: usize,
        role: &'static str,
        hold: Duration,
        window: Duration,
        stop: Arc<AtomicBool>,
        notes: Notes,
    ) {
        let n = self.nodes();
        let stop = Some(&*stop);
        notes.note(format!(
            "membership: demote node {node} ({role}) to observer, for {} ms",
            hold.as_millis()
        ));
        let demoted = Members::demoted(n, node);
        let done = |m: &Members, took: Duration| {
            format!("membership: node {node} is an observer ({m}) after {took:.1?}")
        };
        if !self
            .change_or_settle(
                &Goal::Exactly(demoted),
                window,
                stop,
                &notes,
                done,
                "demotion",
                node,
            )
            .await
        {
            return;
        }
        let until = Instant::now() + hold;
        while Instant::now() < until {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                notes.note(format!(
                    "membership: faults stopped while node {node} is an observer"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        notes.note(format!("membership: promote node {node} back to voter"));
        let done = |m: &Members, took: Duration| {
            format!("membership: node {node} votes again ({m}) after {took:.1?}")
        };
        let goal = Goal::Exactly(Members::all_voting(n));
        self.change_or_settle(&goal, window, stop, &notes, done, "promotion", node)
            .await;
    }

    /// Drives the group to `goal` within `window`; when that fails, notes why
    /// and drives it to any settled configuration instead. Returns whether
    /// the caller may go on (false: faults were stopped or nothing settled).
    #[allow(clippy::too_many_arguments)]
    async fn change_or_settle(
        &self,
        goal: &Goal,
        window: Duration,
        stop: Option<&AtomicBool>,
        notes: &Notes,
        done: impl Fn(&Members, Duration) -> String,
        what: &str,
        node: usize,
    ) -> bool {
        let started = Instant::now();
        match self.drive(goal, started + window, stop, notes).await {
            Ok(m) => {
                notes.note(done(&m, started.elapsed()));
                true
            }
            Err(e) => {
                notes.note(format!(
                    "membership: {what} of node {node} not done within {window:?}: {e}"
                ));
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return false;
                }
                match self
                    .drive(&Goal::Settled, Instant::now() + window, stop, notes)
                    .await
                {
                    Ok(m) => {
                        notes.note(format!("membership: settled at {m}"));
                        true
                    }
                    Err(e) => {
                        notes.note(format!("membership: still not settled: {e}"));
                        false
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demoting_keeps_every_other_node_voting() {
        let d = Members::demoted(5, 3);
        assert_eq!(d.members, vec![1, 2, 4, 5]);
        assert_eq!(d.observers, vec![3]);
        assert_eq!(Members::all_voting(3), Members::new(&[3, 1, 2], &[]));
        assert_ne!(Members::demoted(3, 1), Members::all_voting(3));
    }

    #[test]
    fn the_prepare_names_members_and_observers_as_the_cli_wants_them() {
        assert_eq!(
            Members::demoted(3, 2).args(),
            vec!["prepare", "--members", "1,3", "--observers", "2"]
        );
        // No observers: the option is left out rather than given empty.
        assert_eq!(
            Members::all_voting(3).args(),
            vec!["prepare", "--members", "1,2,3"]
        );
    }
}
