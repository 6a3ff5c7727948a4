//! Invariant checks after every step, and the liveness and stability phases
//! after the network heals.

use dongting_raft::{NodeId, Role};

use super::{Sim, SimResult};
use crate::{ELECT_TIMEOUT_MS, LIVENESS_BOUND_MS};

impl Sim {
    pub(super) fn check(&mut self) -> SimResult<()> {
        for i in 0..self.nodes.len() {
            let Some(raw) = self.nodes[i].raw.as_ref() else {
                continue;
            };
            let n = &self.nodes[i];
            let (term, commit) = (raw.term(), raw.commit_index());
            if term < n.last_term {
                return Err(format!(
                    "node {} term went back from {} to {term}",
                    n.id, n.last_term
                ));
            }
            if commit < n.last_commit {
                return Err(format!(
                    "node {} commit went back from {} to {commit}",
                    n.id, n.last_commit
                ));
            }
            if raw.role() == Role::Leader {
                match self.leaders.get(&term) {
                    Some(&l) if l != n.id => {
                        return Err(format!("two leaders in term {term}: {l} and {}", n.id));
                    }
                    Some(_) => {}
                    None => {
                        self.leaders.insert(term, n.id);
                        self.stats.leaders += 1;
                        self.stats.max_term = self.stats.max_term.max(term);
                        self.trace(|| format!("node {} leader of term {term}", n.id));
                        // Leader completeness: every entry committed in an earlier
                        // term is in the new leader's log.
                        let start = raw.log_start().index;
                        for (k, h) in self.history.iter().enumerate() {
                            let index = k as u64 + 1;
                            if h.commit_bound >= term || index <= start {
                                continue;
                            }
                            let t = raw.entry_term(index);
                            if t != Ok(h.a.term) {
                                return Err(format!(
                                    "leader completeness: leader {} of term {term} has {t:?} at \
                                     index {index}, committed term {}",
                                    n.id, h.a.term
                                ));
                            }
                        }
                    }
                }
            }
            let n = &mut self.nodes[i];
            n.last_term = term;
            n.last_commit = commit;
        }
        Ok(())
    }

    pub(super) fn liveness(&mut self) -> SimResult<()> {
        self.faults = false;
        self.blocked = [[false; 6]; 6];
        self.drop_permille = 0;
        self.dup_permille = 0;
        self.max_delay_ms = 10;
        for n in &mut self.nodes {
            n.restart_at_ms = n.restart_at_ms.min(self.now_ms);
            n.disk_max_ms = 12;
        }
        self.trace(|| "liveness phase: network healed, every node restarting".into());
        let healed_ms = self.now_ms;
        let deadline = healed_ms + LIVENESS_BOUND_MS;
        // Three logical proposals, each with the ids of its attempts (a client
        // retries against the current leader until one attempt is applied).
        let mut markers: Vec<Vec<u64>> = Vec::new();
        let mut last_propose_ms = 0;
        while self.now_ms < deadline {
            self.now_ms += 10;
            self.advance_world()?;
            self.step += 1;
            let leaders = self.leader_nodes();
            let Some(&l) = leaders
                .iter()
                .max_by_key(|&&l| self.nodes[l].raw.as_ref().map_or(0, |r| r.term()))
            else {
                continue;
            };
            if markers.len() < 3 || self.now_ms >= last_propose_ms + 2 * ELECT_TIMEOUT_MS {
                while markers.len() < 3 {
                    markers.push(Vec::new());
                }
                #[allow(clippy::needless_range_loop)] // `propose` borrows self mutably
                for k in 0..markers.len() {
                    if markers[k].iter().any(|m| self.acked.contains_key(m)) {
                        continue;
                    }
                    let pid = self.next_prop;
                    if self.propose(l) {
                        markers[k].push(pid);
                    }
                }
                last_propose_ms = self.now_ms;
            }
            // Done when one marker of every round is applied by every node in
            // the leader's configuration.
            let Some(raw) = self.nodes[l].raw.as_ref() else {
                continue;
            };
            let want: Vec<NodeId> = raw.membership().all_nodes();
            let applied_markers: Vec<u64> = markers
                .iter()
                .filter_map(|ids| ids.iter().filter_map(|m| self.acked.get(m).copied()).min())
                .collect();
            if applied_markers.len() < 3 {
                continue;
            }
            let need = applied_markers.iter().copied().max().unwrap_or(0);
            let all = want.iter().all(|id| {
                self.nodes
                    .iter()
                    .any(|n| n.id == *id && n.raw.is_some() && n.sm.len() as u64 >= need)
            });
            if all {
                self.stats.liveness_ms = self.now_ms - healed_ms;
                return self.stable(l);
            }
        }
        let summary: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.raw {
                Some(r) => format!(
                    "{}:{:?} t{} c{} a{} last{} m{:?}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.commit_index(),
                    r.applied_index(),
                    r.last_index(),
                    r.membership()
                ),
                None => format!("{}:down", n.id),
            })
            .collect();
        Err(format!(
            "liveness: no leader committed fresh proposals on every node within {LIVENESS_BOUND_MS}ms \
             of healing: {summary:?}"
        ))
    }
}

impl Sim {
    /// After liveness: with a healthy network the leader keeps its term for
    /// several election timeouts, and nodes outside its configuration (removed)
    /// do not raise terms.
    fn stable(&mut self, l: usize) -> SimResult<()> {
        let term = self.nodes[l].raw.as_ref().map_or(0, |r| r.term());
        let id = self.nodes[l].id;
        let until = self.now_ms + 5 * ELECT_TIMEOUT_MS;
        while self.now_ms < until {
            self.now_ms += 10;
            self.advance_world()?;
            self.step += 1;
            for n in &self.nodes {
                let Some(r) = n.raw.as_ref() else {
                    continue;
                };
                if r.term() > term {
                    return Err(format!(
                        "stability: node {} reached term {} after leader {id} of term {term} \
                         committed on every node of a healthy cluster",
                        n.id,
                        r.term()
                    ));
                }
            }
        }
        Ok(())
    }
}
