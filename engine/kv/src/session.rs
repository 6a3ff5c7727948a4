//! The session table: exactly-once writes for retried commands.
//!
//! Each session keeps the results of the client's recent sequence numbers. A
//! command whose sequence number has a kept result is answered with that result
//! and not applied again. The table is bounded three ways, all decided by log
//! state only, so every replica drops the same entries at the same index:
//! results the client has acknowledged (`acked_below`) are dropped; a session
//! keeps at most `max_results_per_session` results; a session with no write for
//! `session_ttl_ms` of leader time, or the least recently active one past
//! `max_sessions`, is dropped.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::limits::KvLimits;
use crate::types::{ClientId, WriteResult};

/// One client's deduplication state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// Sequence numbers below this have no kept result: a command with one is
    /// refused (`SEQ_TOO_OLD`) rather than applied a second time.
    pub floor: u64,
    /// Leader time of the session's last write.
    pub last_active_ms: u64,
    /// Kept results by sequence number.
    pub results: Results,
}

/// One session's kept results, sorted by sequence number. A client numbers its
/// writes in order and acknowledges the oldest first, so results arrive at the
/// back and leave from the front: a ring sorted by construction, with a search
/// for the rare out-of-order arrival (a retry on another connection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Results(VecDeque<(u64, WriteResult)>);

impl Results {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(u64, WriteResult)> {
        self.0.iter()
    }

    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.0.front().map(|(s, _)| *s)
    }

    pub(crate) fn pop_first(&mut self) -> Option<(u64, WriteResult)> {
        self.0.pop_front()
    }

    /// Where `seq` is kept (`Ok`) or would go (`Err`). A new write is past
    /// the newest kept result: no search.
    fn position(&self, seq: u64) -> Result<usize, usize> {
        if self.0.back().is_none_or(|(s, _)| *s < seq) {
            return Err(self.0.len());
        }
        self.0.binary_search_by_key(&seq, |(s, _)| *s)
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&WriteResult> {
        let i = self.position(seq).ok()?;
        Some(&self.0[i].1)
    }

    /// Keeps `result` for `seq`, replacing a result kept for it before.
    pub(crate) fn insert(&mut self, seq: u64, result: WriteResult) {
        match self.position(seq) {
            Ok(i) => self.0[i].1 = result,
            Err(i) => self.0.insert(i, (seq, result)),
        }
    }
}

/// What the table says about an incoming command.
pub(crate) enum Check {
    /// Not seen: apply it.
    New,
    /// Seen: answer with this result.
    Duplicate(WriteResult),
    /// Below the floor: refuse.
    TooOld { floor: u64 },
}

/// All sessions, with an activity index for expiry and eviction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sessions {
    map: HashMap<ClientId, Session>,
    by_activity: BTreeSet<(u64, ClientId)>,
}

impl Sessions {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.map.iter()
    }

    /// Drops sessions idle for longer than the TTL at leader time `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64, limits: &KvLimits) {
        let cutoff = now_ms.saturating_sub(limits.session_ttl_ms);
        while let Some(&(t, id)) = self.by_activity.first() {
            if t >= cutoff || now_ms < limits.session_ttl_ms {
                break;
            }
            self.by_activity.pop_first();
            self.map.remove(&id);
            tracing::debug!(client_id = id, "kv session expired");
        }
    }

    /// Looks a command up, forgetting the results the client has acknowledged.
    pub(crate) fn check(&mut self, client: ClientId, seq: u64, acked_below: u64) -> Check {
        let Some(s) = self.map.get_mut(&client) else {
            return Check::New;
        };
        if acked_below > s.floor {
            s.floor = acked_below;
            // Acknowledged results are the oldest few.
            while s.results.first_seq().is_some_and(|k| k < acked_below) {
                s.results.pop_first();
            }
        }
        if let Some(r) = s.results.get(seq) {
            return Check::Duplicate(r.clone());
        }
        if seq < s.floor {
            return Check::TooOld { floor: s.floor };
        }
        Check::New
    }

    /// Keeps `result` for (`client`, `seq`) and marks the session active.
    pub(crate) fn record(
        &mut self,
        client: ClientId,
        seq: u64,
        acked_below: u64,
        now_ms: u64,
        result: WriteResult,
        limits: &KvLimits,
    ) {
        let s = match self.map.entry(client) {
            Entry::Vacant(v) => {
                self.by_activity.insert((now_ms, client));
                v.insert(Session {
                    floor: acked_below,
                    last_active_ms: now_ms,
                    results: Results::default(),
                })
            }
            Entry::Occupied(o) => {
                let s = o.into_mut();
                // Most writes of a busy session fall in its last millisecond:
                // the activity index changes only when the time moves on.
                if now_ms > s.last_active_ms {
                    self.by_activity.remove(&(s.last_active_ms, client));
                    s.last_active_ms = now_ms;
                    self.by_activity.insert((now_ms, client));
                }
                s
            }
        };
        if seq >= s.floor {
            s.results.insert(seq, result);
        }
        while s.results.len() > limits.max_results_per_session {
            if let Some((old, _)) = s.results.pop_first() {
                s.floor = s.floor.max(old + 1);
            }
        }
        while self.map.len() > limits.max_sessions {
            let Some((_, id)) = self.by_activity.pop_first() else {
                break;
            };
            self.map.remove(&id);
            tracing::debug!(client_id = id, "kv session evicted at capacity");
        }
    }

    /// Inserts a restored session.
    pub(crate) fn restore(&mut self, client: ClientId, session: Session) {
        if let Some(old) = self.map.insert(client, session.clone()) {
            self.by_activity.remove(&(old.last_active_ms, client));
        }
        self.by_activity.insert((session.last_active_ms, client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(index: u64) -> WriteResult {
        WriteResult {
            index,
            outcome: Ok(crate::types::Outcome::Done),
        }
    }

    #[test]
    fn results_stay_sorted_whatever_the_arrival_order() {
        let mut rs = Results::default();
        let mut model = std::collections::BTreeMap::new();
        // In order, then late arrivals, a replacement and pops from the front.
        for seq in [5, 6, 9, 10, 7, 1, 8, 6, 12] {
            rs.insert(seq, r(seq * 100 + rs.len() as u64));
            model.insert(seq, r(seq * 100 + model.len() as u64));
            let got: Vec<_> = rs.iter().map(|(s, w)| (*s, w.clone())).collect();
            let want: Vec<_> = model.iter().map(|(s, w)| (*s, w.clone())).collect();
            assert_eq!(got, want);
        }
        for seq in 0..14 {
            assert_eq!(rs.get(seq), model.get(&seq), "seq {seq}");
        }
        assert_eq!(rs.pop_first().map(|(s, _)| s), Some(1));
        assert_eq!(rs.first_seq(), Some(5));
    }
}
