//! The append path: encoding batches into segment writes and caching recent entries.

use std::sync::atomic::Ordering;

use bytes::BytesMut;

use crate::error::{Result, StoreError};
use crate::io::Command;
use crate::record::{LogRecord, encode_record};
use crate::segment::SEGMENT_HEADER_BYTES;

use super::{LOG_DIR, Pending, PendingKind, RaftLog, SegMeta};

impl RaftLog {
    /// Bytes and batches submitted but not yet written.
    pub fn pending(&self) -> (u64, usize) {
        (
            self.submitted_bytes - self.written_bytes,
            self.pending.len() - self.written_pos,
        )
    }

    /// Appends a batch of consecutive entries after `last_index()`; returns at
    /// once. The batch is encoded here (one CRC32C pass and one copy) and
    /// becomes one write on the writer thread (more only when it crosses a
    /// segment or exceeds the torn-tail window); with `sync_force` the syncer's
    /// next fdatasync covers it together with every other completed write.
    /// Entries are also kept in the cache for replication.
    ///
    /// Backpressure: when more than `max_pending_bytes` or `max_pending_batches`
    /// are waiting to be written, returns [`StoreError::Backpressure`] and queues
    /// nothing; retry after [`poll_progress`](RaftLog::poll_progress) shows
    /// progress. While the disk is full, returns [`StoreError::DiskFull`].
    pub fn append(&mut self, entries: &[LogRecord]) -> Result<()> {
        self.write_records(entries)?;
        self.cache_records(entries.iter().cloned());
        Ok(())
    }

    /// [`RaftLog::append`] taking the records: on success `entries` is left
    /// empty, its records moved into the cache of recent entries (no
    /// reference-count round trip per payload); on an error it is unchanged,
    /// to be offered again (after `Backpressure`, say).
    pub fn append_owned(&mut self, entries: &mut Vec<LogRecord>) -> Result<()> {
        self.write_records(entries)?;
        self.cache_records(entries.drain(..));
        Ok(())
    }

    /// Checks a batch and hands its encoding to the writer.
    fn write_records(&mut self, entries: &[LogRecord]) -> Result<()> {
        self.check_usable()?;
        if self.shared.disk_full.load(Ordering::SeqCst) {
            return Err(StoreError::DiskFull {
                path: self.group_dir.join(LOG_DIR),
            });
        }
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index != self.last_index + 1 {
            return Err(StoreError::InvalidArgument(format!(
                "append at index {} but the log ends at {}",
                first.index, self.last_index
            )));
        }
        let mut prev_term = self.last_term();
        let mut batch_bytes = 0u64;
        for (i, e) in entries.iter().enumerate() {
            if e.index != first.index + i as u64 {
                return Err(StoreError::InvalidArgument(format!(
                    "batch not consecutive at index {}",
                    e.index
                )));
            }
            if e.term < prev_term {
                return Err(StoreError::InvalidArgument(format!(
                    "term {} at index {} is below the previous term {prev_term}",
                    e.term, e.index
                )));
            }
            if e.payload.len() > self.cfg.max_entry_bytes {
                return Err(StoreError::InvalidArgument(format!(
                    "entry {} has {} bytes, above max_entry_bytes {}",
                    e.index,
                    e.payload.len(),
                    self.cfg.max_entry_bytes
                )));
            }
            prev_term = e.term;
            batch_bytes += e.encoded_len() as u64;
        }
        let (pending_bytes, pending_batches) = self.pending();
        if pending_batches > 0
            && (pending_batches >= self.cfg.max_pending_batches
                || pending_bytes + batch_bytes > self.cfg.max_pending_bytes)
        {
            return Err(StoreError::Backpressure {
                pending_batches,
                pending_bytes,
            });
        }

        let window = self.cfg.max_unsynced_bytes;
        let mut buf = BytesMut::with_capacity((batch_bytes as usize).min(window as usize));
        // (segment, create, offset) of the chunk being built
        let mut chunk: Option<(u64, Option<u32>, u64)> = None;
        for e in entries {
            let len = e.encoded_len() as u64;
            let need_new = match self.segs.back() {
                None => true,
                Some(s) => {
                    self.roll_needed
                        || (!s.offsets.is_empty() && s.end + len > self.cfg.segment_bytes)
                }
            };
            if (need_new || (!buf.is_empty() && buf.len() as u64 + len > window))
                && let Some((seg, create, offset)) = chunk.take()
            {
                self.submit_chunk(seg, create, offset, &mut buf)?;
            }
            if need_new {
                self.roll_needed = false;
                let replace = self.segs.back().is_some_and(|s| s.offsets.is_empty());
                if replace {
                    self.segs.pop_back();
                }
                self.segs.push_back(SegMeta {
                    first_index: e.index,
                    window_bytes: window as u32,
                    offsets: Vec::new(),
                    end: SEGMENT_HEADER_BYTES as u64,
                });
                chunk = Some((e.index, Some(window as u32), SEGMENT_HEADER_BYTES as u64));
            }
            let Some(seg) = self.segs.back_mut() else {
                return Err(StoreError::Stopped {
                    cause: "internal: no segment after rollover".into(),
                });
            };
            if chunk.is_none() {
                chunk = Some((seg.first_index, None, seg.end));
            }
            seg.offsets.push(seg.end as u32);
            seg.end += len;
            encode_record(e, &mut buf);
            if self.term_runs.last().is_none_or(|(_, t)| *t != e.term) {
                self.term_runs.push((e.index, e.term));
            }
            self.last_index = e.index;
        }
        if let Some((seg, create, offset)) = chunk.take() {
            self.submit_chunk(seg, create, offset, &mut buf)?;
        }
        Ok(())
    }

    /// Adds just-written records to the cache of recent entries and evicts the
    /// oldest past the budget.
    fn cache_records(&mut self, records: impl Iterator<Item = LogRecord>) {
        for r in records {
            self.cache_payload_bytes += r.payload.len() as u64;
            self.cache.push_back(r);
        }
        while self.cache_payload_bytes > self.cfg.cache_bytes && self.cache.len() > 1 {
            if let Some(r) = self.cache.pop_front() {
                self.cache_payload_bytes -= r.payload.len() as u64;
            }
        }
    }

    fn submit_chunk(
        &mut self,
        segment: u64,
        create: Option<u32>,
        offset: u64,
        buf: &mut BytesMut,
    ) -> Result<()> {
        let data = buf.split().freeze();
        let seq = self.take_seq();
        self.submitted_bytes += data.len() as u64;
        self.pending.push_back(Pending {
            seq,
            bytes_after: self.submitted_bytes,
            kind: PendingKind::Log {
                last_index: self.last_index,
            },
        });
        self.send(Command::Append {
            seq,
            segment,
            create,
            offset,
            data,
        })
    }
}
