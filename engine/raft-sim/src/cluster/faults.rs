//! Schedule generation: the faults injected at each chaos step (partitions,
//! message loss, duplication and delay, crashes and restarts, slow disks),
//! membership churn, leader transfers, snapshots and client traffic.

use bytes::Bytes;
use dongting_raft::{AdminOutcome, NodeId, RawNode, Role, Storage};

use super::{Sim, SimResult, decode_sm, encode_sm, local_ms, node_config};
use crate::{ELECT_TIMEOUT_MS, NODE_IDS};

impl Sim {
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].raw.is_some())
            .collect()
    }

    pub(super) fn leader_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                self.nodes[*i]
                    .raw
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader)
            })
            .collect()
    }

    fn pick(&mut self, v: &[usize]) -> Option<usize> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.below(v.len() as u64) as usize])
        }
    }

    fn isolate(&mut self, n: usize) {
        for b in NODE_IDS {
            self.blocked[n][b as usize] = b as usize != n;
            self.blocked[b as usize][n] = b as usize != n;
        }
    }

    pub(super) fn inject_faults(&mut self) -> SimResult<()> {
        if let Some((at, id)) = self.isolate_at
            && self.now_ms >= at
        {
            self.isolate_at = None;
            self.isolate(id as usize);
            self.trace(|| format!("isolate former transfer source {id}"));
        }
        if self.profile.storm && self.rng.chance(15) {
            self.transfer()?;
        }
        if self.profile.storm && self.rng.chance(40) {
            let leaders = self.leader_nodes();
            if let Some(l) = self.pick(&leaders) {
                if self.rng.chance(500) {
                    self.crash_node(l, 20, ELECT_TIMEOUT_MS);
                } else {
                    let n = self.nodes[l].id as usize;
                    self.isolate(n);
                    self.trace(|| format!("storm: isolate leader {n}"));
                }
            } else if self.rng.chance(200) {
                self.blocked = [[false; 6]; 6];
                self.trace(|| "storm: heal network".into());
            }
        }
        let r = self.rng.below(1000);
        match r {
            0..=9 => {
                // Symmetric partition into two random groups.
                let mut side = [false; 6];
                for id in NODE_IDS {
                    side[id as usize] = self.rng.chance(500);
                }
                for a in NODE_IDS {
                    for b in NODE_IDS {
                        self.blocked[a as usize][b as usize] = side[a as usize] != side[b as usize];
                    }
                }
                self.trace(|| format!("partition {side:?}"));
            }
            10..=14 => {
                // Asymmetric: one node cannot send (or cannot receive).
                let n = NODE_IDS[self.rng.below(5) as usize] as usize;
                let out = self.rng.chance(500);
                for b in NODE_IDS {
                    if b as usize != n {
                        if out {
                            self.blocked[n][b as usize] = true;
                        } else {
                            self.blocked[b as usize][n] = true;
                        }
                    }
                }
                self.trace(|| format!("asymmetric cut of node {n} outbound={out}"));
            }
            15..=19 => {
                // Isolate the leader.
                let leaders = self.leader_nodes();
                if let Some(l) = self.pick(&leaders) {
                    let n = self.nodes[l].id as usize;
                    for b in NODE_IDS {
                        if b as usize != n {
                            self.blocked[n][b as usize] = true;
                            self.blocked[b as usize][n] = true;
                        }
                    }
                    self.trace(|| format!("isolate leader {n}"));
                }
            }
            20..=39 => {
                self.blocked = [[false; 6]; 6];
                self.trace(|| "heal network".into());
            }
            40..=49 => {
                self.drop_permille = [0, 0, 20, 100, 300][self.rng.below(5) as usize];
                self.dup_permille = [0, 0, 20, 100][self.rng.below(4) as usize];
                self.max_delay_ms = [5, 10, 30, 100][self.rng.below(4) as usize];
                let (d, u, m) = (self.drop_permille, self.dup_permille, self.max_delay_ms);
                self.trace(|| format!("network drop={d}‰ dup={u}‰ max_delay={m}ms"));
            }
            50..=64 => self.crash(false)?,
            65..=69 => self.crash(true)?,
            70..=79 => {
                let i = self.rng.below(self.nodes.len() as u64) as usize;
                let slow = self.rng.chance(500);
                self.nodes[i].disk_max_ms = if slow { 150 } else { 12 };
                let id = self.nodes[i].id;
                self.trace(|| format!("node {id} disk {}", if slow { "slow" } else { "normal" }));
            }
            80..=89 => self.membership_op()?,
            90..=96 => self.transfer()?,
            97..=111 => self.snapshot()?,
            _ => {}
        }
        Ok(())
    }

    fn crash(&mut self, leader: bool) -> SimResult<()> {
        let live = if leader {
            self.leader_nodes()
        } else {
            self.live()
        };
        if let Some(i) = self.pick(&live) {
            self.crash_node(i, 50, 3 * ELECT_TIMEOUT_MS);
        }
        Ok(())
    }

    fn crash_node(&mut self, i: usize, min_down_ms: u64, max_down_ms: u64) {
        let restart = self.now_ms + self.rng.range(min_down_ms, max_down_ms);
        let n = &mut self.nodes[i];
        if let Some(raw) = n.raw.take() {
            n.down = Some(raw.into_store());
        }
        let lost = n.disk.len();
        n.disk.clear();
        n.reads.clear();
        n.restart_at_ms = restart;
        self.stats.crashes += 1;
        let id = self.nodes[i].id;
        self.trace(|| format!("crash node {id} (lost {lost} unpersisted readies)"));
    }

    pub(super) fn restart_due(&mut self) -> SimResult<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].raw.is_none() && self.nodes[i].restart_at_ms <= self.now_ms {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) -> SimResult<()> {
        let (seed, mutation) = (self.opts.seed, self.opts.mutation);
        let now = self.now_ms;
        let n = &mut self.nodes[i];
        let Some(store) = n.down.take() else {
            return Ok(());
        };
        let (applied, sm) = match store.snapshot() {
            Ok(s) => {
                let sm = decode_sm(&s.data).ok_or("undecodable local snapshot")?;
                (s.meta.index, sm)
            }
            Err(_) => (0, Vec::new()),
        };
        if sm.len() as u64 != applied {
            return Err(format!(
                "node {} snapshot at {applied} holds {} entries",
                n.id,
                sm.len()
            ));
        }
        let hs_term = store.hard_state().term;
        let cfg = node_config(n.id, seed ^ now, mutation, applied, self.profile);
        let raw = RawNode::new(cfg, store, local_ms(now, n.clock_ppm))
            .map_err(|e| format!("node {} failed to restart: {e}", n.id))?;
        if raw.term() != hs_term {
            return Err(format!(
                "node {} restarted in term {} not {hs_term}",
                n.id,
                raw.term()
            ));
        }
        n.sm = sm;
        n.last_term = raw.term();
        n.last_commit = raw.commit_index();
        n.raw = Some(raw);
        let id = n.id;
        self.trace(|| format!("restart node {id} applied={applied}"));
        Ok(())
    }

    fn membership_op(&mut self) -> SimResult<()> {
        let leaders = self.leader_nodes();
        let Some(l) = self.pick(&leaders) else {
            return Ok(());
        };
        let joint = self.nodes[l]
            .raw
            .as_ref()
            .and_then(|r| r.membership().joint.clone());
        let r = match joint {
            None => {
                let size = [1, 2, 3, 3, 3, 3, 4, 5][self.rng.below(8) as usize];
                let mut ids = NODE_IDS.to_vec();
                for k in (1..ids.len()).rev() {
                    let j = self.rng.below(k as u64 + 1) as usize;
                    ids.swap(k, j);
                }
                let members: Vec<NodeId> = ids[..size].to_vec();
                let observers: Vec<NodeId> = ids[size..]
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(500))
                    .collect();
                let Some(raw) = self.nodes[l].raw.as_mut() else {
                    return Ok(());
                };
                let r = raw.prepare_membership(&members, &observers);
                if let Ok(AdminOutcome::Appended(_)) = r {
                    // Repeating the same prepare must be a no-op that says so.
                    match raw.prepare_membership(&members, &observers) {
                        Ok(AdminOutcome::AlreadyPending(_)) | Ok(AdminOutcome::AlreadyDone(_)) => {}
                        other => return Err(format!("repeated prepare not idempotent: {other:?}")),
                    }
                }
                self.trace(|| {
                    format!("prepare members={members:?} observers={observers:?}: {r:?}")
                });
                r
            }
            Some(j) => {
                let commit = self.rng.chance(650);
                let Some(raw) = self.nodes[l].raw.as_mut() else {
                    return Ok(());
                };
                let r = if commit {
                    raw.commit_membership(j.prepare_index)
                } else {
                    raw.abort_membership()
                };
                if let Ok(AdminOutcome::Appended(_)) = r {
                    let again = if commit {
                        raw.commit_membership(j.prepare_index)
                    } else {
                        raw.abort_membership()
                    };
                    match again {
                        Ok(AdminOutcome::AlreadyPending(_)) | Ok(AdminOutcome::AlreadyDone(_)) => {}
                        other => {
                            return Err(format!("repeated resolution not idempotent: {other:?}"));
                        }
                    }
                }
                let p = j.prepare_index;
                self.trace(|| {
                    format!(
                        "{} prepare {p}: {r:?}",
                        if commit { "commit" } else { "abort" }
                    )
                });
                r
            }
        };
        if let Ok(AdminOutcome::Appended(_)) = r {
            self.stats.config_ops += 1;
        }
        Ok(())
    }

    fn transfer(&mut self) -> SimResult<()> {
        let leaders = self.leader_nodes();
        let Some(l) = self.pick(&leaders) else {
            return Ok(());
        };
        let target = NODE_IDS[self.rng.below(5) as usize];
        let timeout = self.rng.range(ELECT_TIMEOUT_MS / 2, 3 * ELECT_TIMEOUT_MS);
        let Some(raw) = self.nodes[l].raw.as_mut() else {
            return Ok(());
        };
        let r = raw.transfer_leader(target, timeout);
        let from = self.nodes[l].id;
        if r.is_ok() {
            self.stats.transfers += 1;
            if self.profile.storm && self.isolate_at.is_none() && self.rng.chance(500) {
                let at = self.now_ms + self.rng.range(5, 60);
                self.isolate_at = Some((at, from));
            }
        }
        self.trace(|| format!("transfer {from} -> {target}: {r:?}"));
        Ok(())
    }

    fn snapshot(&mut self) -> SimResult<()> {
        let live = self.live();
        let Some(i) = self.pick(&live) else {
            return Ok(());
        };
        let keep = self.rng.below(4);
        let n = &mut self.nodes[i];
        let Some(raw) = n.raw.as_mut() else {
            return Ok(());
        };
        let idx = raw.applied_index();
        if idx <= raw.log_start().index + 4 {
            return Ok(());
        }
        let Ok(meta) = raw.snapshot_meta(idx) else {
            return Ok(());
        };
        if n.sm.len() as u64 != idx {
            return Err(format!(
                "node {} applied {idx} but state machine has {}",
                n.id,
                n.sm.len()
            ));
        }
        let data = encode_sm(&n.sm);
        raw.store_mut()
            .create_snapshot(meta, data)
            .map_err(|e| format!("node {} create_snapshot({idx}): {e}", n.id))?;
        let to = (idx - keep).max(raw.log_start().index);
        raw.store_mut()
            .compact(to)
            .map_err(|e| format!("node {} compact({to}): {e}", n.id))?;
        raw.on_compacted(to)
            .map_err(|e| format!("node {} on_compacted({to}): {e}", n.id))?;
        self.stats.snapshots += 1;
        let id = n.id;
        self.trace(|| format!("node {id} snapshot at {idx}, compacted to {to}"));
        Ok(())
    }

    pub(super) fn client_ops(&mut self) -> SimResult<()> {
        if self.rng.chance(250) {
            let leaders = self.leader_nodes();
            if let Some(l) = self.pick(&leaders) {
                let k = self.rng.range(1, 4);
                for _ in 0..k {
                    self.propose(l);
                }
            }
        }
        if self.rng.chance(500) {
            // Clients mostly ask a node that believes it leads (possibly stale).
            let targets = if self.rng.chance(500) {
                self.leader_nodes()
            } else {
                self.live()
            };
            if let Some(i) = self.pick(&targets) {
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                let must = self.max_acked_index;
                let n = &mut self.nodes[i];
                if let Some(raw) = n.raw.as_mut()
                    && raw.read_index(ctx).is_ok()
                {
                    n.reads.insert(ctx, must);
                }
            }
        }
        Ok(())
    }

    pub(super) fn propose(&mut self, i: usize) -> bool {
        let id = self.next_prop;
        self.next_prop += 1;
        let data = Bytes::copy_from_slice(&id.to_le_bytes());
        let Some(raw) = self.nodes[i].raw.as_mut() else {
            return false;
        };
        let ok = raw.propose(data).is_ok();
        if ok {
            self.stats.proposals += 1;
        }
        ok
    }
}
