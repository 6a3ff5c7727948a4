//! Write commands: encode, decode (copying or slicing the input) and the
//! leader-time stamp the leader sets on a proposal.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::error::KvError;
use crate::fb;
use crate::types::{Command, Op};

use super::{Copied, Shared, Source, built, bytes_of, invalid, key_list, with_built};

/// Encodes a write command. Cost: one buffer of exactly its size (built in
/// the thread's reusable builder, see [`with_built`]).
pub fn encode_command(cmd: &Command) -> Bytes {
    built(|b| build_command(b, cmd))
}

/// [`encode_command`] handing the encoding to `done` instead of copying it out.
pub fn with_command<R>(cmd: &Command, done: impl FnOnce(&[u8]) -> R) -> R {
    with_built(|b| build_command(b, cmd), done)
}

fn build_command(b: &mut FlatBufferBuilder<'static>, cmd: &Command) {
    let (op_type, op) = encode_op(b, &cmd.op);
    // The leader time is always written (even 0) so the leader can stamp its
    // clock into the encoding in place (see `stamp_leader_time`).
    b.force_defaults(true);
    let root = fb::Command::create(
        b,
        &fb::CommandArgs {
            client_id: cmd.client_id,
            seq: cmd.seq,
            acked_below: cmd.acked_below,
            leader_time_ms: cmd.leader_time_ms,
            op_type,
            op: Some(op),
        },
    );
    b.force_defaults(false);
    b.finish(root, None);
}

/// Byte position of the root command's `leader_time_ms` field in `data`, when
/// the encoding carries it.
fn leader_time_pos(data: &[u8]) -> Option<usize> {
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(data.get(i..i + 4)?.try_into().ok()?))
    };
    let u16_at = |i: usize| -> Option<u16> {
        Some(u16::from_le_bytes(data.get(i..i + 2)?.try_into().ok()?))
    };
    let table = u32_at(0)? as usize;
    let vtable = (table as i64).checked_sub(i64::from(u32_at(table)? as i32))?;
    let vtable = usize::try_from(vtable).ok()?;
    let field = usize::from(fb::Command::VT_LEADER_TIME_MS);
    if usize::from(u16_at(vtable)?) < field + 2 {
        return None;
    }
    let voffset = usize::from(u16_at(vtable + field)?);
    if voffset == 0 {
        return None;
    }
    let pos = table + voffset;
    (pos + 8 <= data.len()).then_some(pos)
}

/// `b` moved from `from` to the same bytes in `to`, a copy of `from`.
fn rebase(b: &Bytes, from: &[u8], to: &Bytes) -> Bytes {
    let start = (b.as_ptr() as usize).wrapping_sub(from.as_ptr() as usize);
    if b.is_empty() || start > from.len() || b.len() > from.len() - start {
        return b.clone();
    }
    to.slice(start..start + b.len())
}

fn rebase_op(op: &Op, from: &[u8], to: &Bytes) -> Op {
    let r = |b: &Bytes| rebase(b, from, to);
    match op {
        Op::Put { key, value } => Op::Put {
            key: r(key),
            value: r(value),
        },
        Op::Remove { key } => Op::Remove { key: r(key) },
        Op::Mkdir { key } => Op::Mkdir { key: r(key) },
        Op::BatchPut { entries } => Op::BatchPut {
            entries: entries.iter().map(|(k, v)| (r(k), r(v))).collect(),
        },
        Op::BatchRemove { keys } => Op::BatchRemove {
            keys: keys.iter().map(r).collect(),
        },
        Op::CompareAndSet {
            key,
            expected,
            new_value,
        } => Op::CompareAndSet {
            key: r(key),
            expected: r(expected),
            new_value: r(new_value),
        },
        Op::PutTemp { key, value, ttl_ms } => Op::PutTemp {
            key: r(key),
            value: r(value),
            ttl_ms: *ttl_ms,
        },
        Op::MakeTempDir { key, ttl_ms } => Op::MakeTempDir {
            key: r(key),
            ttl_ms: *ttl_ms,
        },
        Op::UpdateTtl { key, ttl_ms } => Op::UpdateTtl {
            key: r(key),
            ttl_ms: *ttl_ms,
        },
        Op::TryLock {
            key,
            lease_ms,
            wait_timeout_ms,
        } => Op::TryLock {
            key: r(key),
            lease_ms: *lease_ms,
            wait_timeout_ms: *wait_timeout_ms,
        },
        Op::Unlock { key } => Op::Unlock { key: r(key) },
        Op::UpdateLease { key, lease_ms } => Op::UpdateLease {
            key: r(key),
            lease_ms: *lease_ms,
        },
        Op::Expire {
            key,
            expected_version,
        } => Op::Expire {
            key: r(key),
            expected_version: *expected_version,
        },
    }
}

/// The encoding of `cmd` (decoded from `data`) with `leader_time_ms` set, and
/// the command whose keys and values are slices of that new encoding.
///
/// Cost: one copy of `data` with the 8-byte field overwritten, when `data`
/// carries the field (every encoding made by [`encode_command`] does); other
/// encodings are rebuilt. The new buffer is the encoding's own, so it pins no
/// larger receive buffer.
pub fn stamp_leader_time(data: &[u8], cmd: &Command, leader_time_ms: u64) -> (Bytes, Command) {
    let Some(pos) = leader_time_pos(data) else {
        let mut c = cmd.clone();
        c.leader_time_ms = leader_time_ms;
        let enc = encode_command(&c);
        let c = decode_command_bytes(&enc).unwrap_or(c);
        return (enc, c);
    };
    let mut buf = data.to_vec();
    buf[pos..pos + 8].copy_from_slice(&leader_time_ms.to_le_bytes());
    let enc = Bytes::from(buf);
    let c = Command {
        client_id: cmd.client_id,
        seq: cmd.seq,
        acked_below: cmd.acked_below,
        leader_time_ms,
        op: rebase_op(&cmd.op, data, &enc),
    };
    (enc, c)
}

fn encode_op<'b>(
    b: &mut FlatBufferBuilder<'b>,
    op: &Op,
) -> (fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>) {
    match op {
        Op::Put { key, value } => {
            let key = Some(b.create_vector(key));
            let value = Some(b.create_vector(value));
            let t = fb::Put::create(b, &fb::PutArgs { key, value });
            (fb::Op::Put, t.as_union_value())
        }
        Op::Remove { key } => {
            let key = Some(b.create_vector(key));
            let t = fb::Remove::create(b, &fb::RemoveArgs { key });
            (fb::Op::Remove, t.as_union_value())
        }
        Op::Mkdir { key } => {
            let key = Some(b.create_vector(key));
            let t = fb::Mkdir::create(b, &fb::MkdirArgs { key });
            (fb::Op::Mkdir, t.as_union_value())
        }
        Op::BatchPut { entries } => {
            let items: Vec<_> = entries
                .iter()
                .map(|(k, v)| {
                    let key = Some(b.create_vector(k));
                    let value = Some(b.create_vector(v));
                    fb::KeyValue::create(b, &fb::KeyValueArgs { key, value })
                })
                .collect();
            let entries = Some(b.create_vector(&items));
            let t = fb::BatchPut::create(b, &fb::BatchPutArgs { entries });
            (fb::Op::BatchPut, t.as_union_value())
        }
        Op::BatchRemove { keys } => {
            let keys = Some(key_list(b, keys));
            let t = fb::BatchRemove::create(b, &fb::BatchRemoveArgs { keys });
            (fb::Op::BatchRemove, t.as_union_value())
        }
        Op::CompareAndSet {
            key,
            expected,
            new_value,
        } => {
            let key = Some(b.create_vector(key));
            let expected = Some(b.create_vector(expected));
            let new_value = Some(b.create_vector(new_value));
            let t = fb::CompareAndSet::create(
                b,
                &fb::CompareAndSetArgs {
                    key,
                    expected,
                    new_value,
                },
            );
            (fb::Op::CompareAndSet, t.as_union_value())
        }
        Op::PutTemp { key, value, ttl_ms } => {
            let key = Some(b.create_vector(key));
            let value = Some(b.create_vector(value));
            let t = fb::PutTemp::create(
                b,
                &fb::PutTempArgs {
                    key,
                    value,
                    ttl_ms: *ttl_ms,
                },
            );
            (fb::Op::PutTemp, t.as_union_value())
        }
        Op::MakeTempDir { key, ttl_ms } => {
            let key = Some(b.create_vector(key));
            let t = fb::MakeTempDir::create(
                b,
                &fb::MakeTempDirArgs {
                    key,
                    ttl_ms: *ttl_ms,
                },
            );
            (fb::Op::MakeTempDir, t.as_union_value())
        }
        Op::UpdateTtl { key, ttl_ms } => {
            let key = Some(b.create_vector(key));
            let t = fb::UpdateTtl::create(
                b,
                &fb::UpdateTtlArgs {
                    key,
                    ttl_ms: *ttl_ms,
                },
            );
            (fb::Op::UpdateTtl, t.as_union_value())
        }
        Op::TryLock {
            key,
            lease_ms,
            wait_timeout_ms,
        } => {
            let key = Some(b.create_vector(key));
            let t = fb::TryLock::create(
                b,
                &fb::TryLockArgs {
                    key,
                    lease_ms: *lease_ms,
                    wait_timeout_ms: *wait_timeout_ms,
                },
            );
            (fb::Op::TryLock, t.as_union_value())
        }
        Op::Unlock { key } => {
            let key = Some(b.create_vector(key));
            let t = fb::Unlock::create(b, &fb::UnlockArgs { key });
            (fb::Op::Unlock, t.as_union_value())
        }
        Op::UpdateLease { key, lease_ms } => {
            let key = Some(b.create_vector(key));
            let t = fb::UpdateLease::create(
                b,
                &fb::UpdateLeaseArgs {
                    key,
                    lease_ms: *lease_ms,
                },
            );
            (fb::Op::UpdateLease, t.as_union_value())
        }
        Op::Expire {
            key,
            expected_version,
        } => {
            let key = Some(b.create_vector(key));
            let t = fb::Expire::create(
                b,
                &fb::ExpireArgs {
                    key,
                    expected_version: *expected_version,
                },
            );
            (fb::Op::Expire, t.as_union_value())
        }
    }
}

/// Decodes a write command, copying keys and values out of `data`.
pub fn decode_command(data: &[u8]) -> Result<Command, KvError> {
    decode_command_from(data, &Copied)
}

/// Decodes a write command whose keys and values are slices of `data` (no copy;
/// the command keeps `data`'s buffer alive).
pub fn decode_command_bytes(data: &Bytes) -> Result<Command, KvError> {
    decode_command_from(data, &Shared(data))
}

fn decode_command_from<S: Source>(data: &[u8], src: &S) -> Result<Command, KvError> {
    let c = flatbuffers::root::<fb::Command<'_>>(data).map_err(|e| invalid("command", e))?;
    let missing = || {
        invalid(
            "command",
            format!("op type {} without its body", c.op_type().0),
        )
    };
    let key = |k| bytes_of(src, k);
    let op = match c.op_type() {
        fb::Op::Put => {
            let t = c.op_as_put().ok_or_else(missing)?;
            Op::Put {
                key: key(t.key()),
                value: key(t.value()),
            }
        }
        fb::Op::Remove => {
            let t = c.op_as_remove().ok_or_else(missing)?;
            Op::Remove { key: key(t.key()) }
        }
        fb::Op::Mkdir => {
            let t = c.op_as_mkdir().ok_or_else(missing)?;
            Op::Mkdir { key: key(t.key()) }
        }
        fb::Op::BatchPut => {
            let t = c.op_as_batch_put().ok_or_else(missing)?;
            let entries = t
                .entries()
                .map(|v| {
                    v.iter()
                        .map(|kv| (key(kv.key()), key(kv.value())))
                        .collect()
                })
                .unwrap_or_default();
            Op::BatchPut { entries }
        }
        fb::Op::BatchRemove => {
            let t = c.op_as_batch_remove().ok_or_else(missing)?;
            let keys = t
                .keys()
                .map(|v| v.iter().map(|k| key(k.key())).collect())
                .unwrap_or_default();
            Op::BatchRemove { keys }
        }
        fb::Op::CompareAndSet => {
            let t = c.op_as_compare_and_set().ok_or_else(missing)?;
            Op::CompareAndSet {
                key: key(t.key()),
                expected: key(t.expected()),
                new_value: key(t.new_value()),
            }
        }
        fb::Op::PutTemp => {
            let t = c.op_as_put_temp().ok_or_else(missing)?;
            Op::PutTemp {
                key: key(t.key()),
                value: key(t.value()),
                ttl_ms: t.ttl_ms(),
            }
        }
        fb::Op::MakeTempDir => {
            let t = c.op_as_make_temp_dir().ok_or_else(missing)?;
            Op::MakeTempDir {
                key: key(t.key()),
                ttl_ms: t.ttl_ms(),
            }
        }
        fb::Op::UpdateTtl => {
            let t = c.op_as_update_ttl().ok_or_else(missing)?;
            Op::UpdateTtl {
                key: key(t.key()),
                ttl_ms: t.ttl_ms(),
            }
        }
        fb::Op::TryLock => {
            let t = c.op_as_try_lock().ok_or_else(missing)?;
            Op::TryLock {
                key: key(t.key()),
                lease_ms: t.lease_ms(),
                wait_timeout_ms: t.wait_timeout_ms(),
            }
        }
        fb::Op::Unlock => {
            let t = c.op_as_unlock().ok_or_else(missing)?;
            Op::Unlock { key: key(t.key()) }
        }
        fb::Op::UpdateLease => {
            let t = c.op_as_update_lease().ok_or_else(missing)?;
            Op::UpdateLease {
                key: key(t.key()),
                lease_ms: t.lease_ms(),
            }
        }
        fb::Op::Expire => {
            let t = c.op_as_expire().ok_or_else(missing)?;
            Op::Expire {
                key: key(t.key()),
                expected_version: t.expected_version(),
            }
        }
        other => return Err(invalid("command", format!("unknown op type {}", other.0))),
    };
    Ok(Command {
        client_id: c.client_id(),
        seq: c.seq(),
        acked_below: c.acked_below(),
        leader_time_ms: c.leader_time_ms(),
        op,
    })
}
