//! Reads: entries from the cache of recent entries, or from the segment files on the writer thread.

use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::io::{Command, ReadId, Span, lock};
use crate::record::{LogRecord, RECORD_HEADER_BYTES};

use super::{RaftLog, ReadOutcome, SegMeta};

impl RaftLog {
    /// Entries `lo..hi` if all are in the cache (at most `max_bytes` of payload,
    /// but at least one entry). Never touches the disk.
    pub fn cached_entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Option<Vec<LogRecord>> {
        let first = self.cache.front()?.index;
        if lo < first || hi > self.last_index + 1 || lo >= hi {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for r in self
            .cache
            .range((lo - first) as usize..(hi - first) as usize)
        {
            bytes += r.payload.len() as u64;
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(r.clone());
        }
        Some(out)
    }

    /// Reads entries `lo..hi` (at most `max_bytes` of payload, at least one
    /// entry): from the cache when possible, else by a disk read on the writer
    /// thread whose result arrives through
    /// [`take_read_results`](RaftLog::take_read_results). Records read from
    /// disk are CRC-checked; damage is reported as [`StoreError::Corrupt`].
    pub fn read(&mut self, lo: u64, hi: u64, max_bytes: u64) -> Result<ReadOutcome> {
        self.check_usable()?;
        if lo < self.first_index || hi > self.last_index + 1 || lo >= hi {
            return Err(StoreError::Unavailable {
                index: if lo < self.first_index {
                    lo
                } else {
                    hi.saturating_sub(1)
                },
                first: self.first_index,
                last: self.last_index,
            });
        }
        if let Some(v) = self.cached_entries(lo, hi, max_bytes) {
            return Ok(ReadOutcome::Ready(v));
        }
        if self.reads_in_flight >= self.cfg.max_pending_reads {
            let (pending_bytes, pending_batches) = self.pending();
            return Err(StoreError::Backpressure {
                pending_batches,
                pending_bytes,
            });
        }
        let spans = self.spans(lo, hi, max_bytes);
        let id = self.next_read_id;
        self.next_read_id += 1;
        self.reads_in_flight += 1;
        self.send(Command::Read { id, spans })?;
        Ok(ReadOutcome::Pending(id))
    }

    fn spans(&self, lo: u64, hi: u64, max_bytes: u64) -> Vec<Span> {
        let mut spans = Vec::new();
        let mut bytes = 0u64;
        let start_seg = self
            .segs
            .partition_point(|s| s.first_index <= lo)
            .saturating_sub(1);
        let mut index = lo;
        'outer: for s in self.segs.iter().skip(start_seg) {
            if s.offsets.is_empty() || index > s.last_index() {
                continue;
            }
            let first_pos = (index - s.first_index) as usize;
            let mut pos = first_pos;
            while pos < s.offsets.len() && index < hi {
                // `max_bytes` counts payload, as for cached reads.
                let size =
                    s.record_end(pos) - u64::from(s.offsets[pos]) - RECORD_HEADER_BYTES as u64;
                if (index > lo) && bytes + size > max_bytes {
                    if pos > first_pos {
                        spans.push(self.span(s, first_pos, pos));
                    }
                    break 'outer;
                }
                bytes += size;
                pos += 1;
                index += 1;
            }
            if pos > first_pos {
                spans.push(self.span(s, first_pos, pos));
            }
            if index >= hi {
                break;
            }
        }
        spans
    }

    fn span(&self, s: &SegMeta, from: usize, to: usize) -> Span {
        Span {
            segment: s.first_index,
            start: u64::from(s.offsets[from]),
            end: s.record_end(to - 1),
            first: s.first_index + from as u64,
            count: to - from,
        }
    }

    /// Results of disk reads completed since the last call.
    pub fn take_read_results(&mut self) -> Vec<(ReadId, Result<Vec<LogRecord>>)> {
        let v: Vec<_> = std::mem::take(&mut *lock(&self.shared.reads_done));
        self.reads_in_flight = self.reads_in_flight.saturating_sub(v.len());
        v
    }

    /// Reads `lo..hi` and waits for the result. Blocking (for replay at
    /// startup or tools; not on an async worker).
    pub fn read_blocking(&mut self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<LogRecord>> {
        match self.read(lo, hi, max_bytes)? {
            ReadOutcome::Ready(v) => Ok(v),
            ReadOutcome::Pending(id) => loop {
                let mut found = None;
                {
                    let mut done = lock(&self.shared.reads_done);
                    if let Some(pos) = done.iter().position(|(i, _)| *i == id) {
                        found = Some(done.remove(pos).1);
                    }
                }
                if let Some(r) = found {
                    self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
                    return r;
                }
                self.check_usable()?;
                self.wait_changed_blocking(Duration::from_millis(100));
            },
        }
    }
}
