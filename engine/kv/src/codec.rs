//! FlatBuffers encoding of commands, results, reads, watch events and lock
//! notifications (schema: `schema/kv.fbs`).
//!
//! Every decoder runs the FlatBuffers verifier first and turns any problem into
//! `INVALID_COMMAND` with a description; no input makes it panic. Decoders taking
//! `&Bytes` return keys and values as slices of the input (no copy); those taking
//! `&[u8]` copy them.

use bytes::{Buf, Bytes};
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::error::KvError;
use crate::fb;
use crate::sm::{ListPage, ReadRequest, ReadResponse};
use crate::types::{
    ClientId, Command, LockNotification, LockNotificationKind, LockOutcome, LockView, NodeState,
    NodeView, Op, Outcome, ReadResult, TtlView, WatchEvent, WriteResult,
};

/// Where decoded byte fields come from: slices of a shared buffer, or copies.
pub(crate) trait Source {
    fn take(&self, part: &[u8]) -> Bytes;
}

/// Copies each field into a buffer of its own.
struct Copied;
impl Source for Copied {
    fn take(&self, part: &[u8]) -> Bytes {
        Bytes::copy_from_slice(part)
    }
}

/// Slices each field out of the shared buffer it was decoded from.
struct Shared<'a>(&'a Bytes);
impl Source for Shared<'_> {
    fn take(&self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            Bytes::new()
        } else {
            // `part` was produced by the verifier-checked view of `self.0`, so it
            // lies inside it.
            self.0.slice_ref(part)
        }
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::InvalidCommand(format!("{what}: {e}"))
}

fn bytes_of<S: Source>(src: &S, v: Option<flatbuffers::Vector<'_, u8>>) -> Bytes {
    v.map_or_else(Bytes::new, |v| src.take(v.bytes()))
}

fn finish(b: FlatBufferBuilder<'_>) -> Bytes {
    let (buf, head) = b.collapse();
    let mut out = Bytes::from(buf);
    // `advance`, not `slice`: a slice of a `Bytes` made from a `Vec` costs an
    // allocation (the buffer becomes shared).
    out.advance(head);
    out
}

/// A builder that grew larger than this is dropped after use rather than
/// kept (one huge batch must not pin its memory).
const KEPT_BUILDER_BYTES: usize = 64 * 1024;

thread_local! {
    /// Idle builders of this thread, kept warm between encodings.
    static BUILDERS: std::cell::RefCell<Vec<FlatBufferBuilder<'static>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Builds a buffer with `build` in one of this thread's reusable builders and
/// hands the finished bytes to `done`: no allocation once the builders are
/// warm. A call nested inside `done` (a body, then the envelope around it)
/// takes a second builder.
pub fn with_built<R>(
    build: impl FnOnce(&mut FlatBufferBuilder<'static>),
    done: impl FnOnce(&[u8]) -> R,
) -> R {
    let mut b = BUILDERS
        .with(|v| v.borrow_mut().pop())
        .unwrap_or_else(|| FlatBufferBuilder::with_capacity(1024));
    b.reset();
    build(&mut b);
    let r = done(b.finished_data());
    if b.finished_data().len() <= KEPT_BUILDER_BYTES {
        BUILDERS.with(|v| v.borrow_mut().push(b));
    }
    r
}

/// [`with_built`] into a `Bytes` of exactly the finished size.
fn built(build: impl FnOnce(&mut FlatBufferBuilder<'static>)) -> Bytes {
    with_built(build, Bytes::copy_from_slice)
}

fn state_to_fb(s: NodeState) -> fb::NodeState {
    match s {
        NodeState::Absent => fb::NodeState::Absent,
        NodeState::Value => fb::NodeState::Value,
        NodeState::Dir => fb::NodeState::Dir,
        NodeState::Lock => fb::NodeState::Lock,
    }
}

pub(crate) fn state_from_fb(s: fb::NodeState) -> Result<NodeState, KvError> {
    Ok(match s {
        fb::NodeState::Absent => NodeState::Absent,
        fb::NodeState::Value => NodeState::Value,
        fb::NodeState::Dir => NodeState::Dir,
        fb::NodeState::Lock => NodeState::Lock,
        other => return Err(invalid("node state", format!("unknown value {}", other.0))),
    })
}

// ----- commands -----

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

fn key_list<'b>(
    b: &mut FlatBufferBuilder<'b>,
    keys: &[Bytes],
) -> WIPOffset<flatbuffers::Vector<'b, flatbuffers::ForwardsUOffset<fb::KeyBytes<'b>>>> {
    let items: Vec<_> = keys
        .iter()
        .map(|k| {
            let key = Some(b.create_vector(k));
            fb::KeyBytes::create(b, &fb::KeyBytesArgs { key })
        })
        .collect();
    b.create_vector(&items)
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

// ----- write results -----

fn error_parts<'b>(
    b: &mut FlatBufferBuilder<'b>,
    e: Option<&KvError>,
) -> (u16, Option<WIPOffset<&'b str>>) {
    match e {
        None => (0, None),
        Some(e) => (e.code(), Some(b.create_string(e.detail()))),
    }
}

fn error_from(code: u16, message: Option<&str>) -> KvError {
    KvError::from_code(code, message.unwrap_or_default())
}

pub(crate) fn build_write_result<'b>(
    b: &mut FlatBufferBuilder<'b>,
    r: &WriteResult,
) -> WIPOffset<fb::CommandResult<'b>> {
    let mut args = fb::CommandResultArgs {
        index: r.index,
        ..Default::default()
    };
    match &r.outcome {
        Err(e) => {
            let (code, message) = error_parts(b, Some(e));
            args.code = code;
            args.message = message;
        }
        Ok(o) => match o {
            Outcome::Done => args.kind = fb::ResultKind::Done,
            Outcome::Put { created } => {
                args.kind = fb::ResultKind::Put;
                args.created = *created;
            }
            Outcome::Mkdir { created } => {
                args.kind = fb::ResultKind::Mkdir;
                args.created = *created;
            }
            Outcome::Batch(items) => {
                args.kind = fb::ResultKind::Batch;
                let items: Vec<_> = items
                    .iter()
                    .map(|i| {
                        let (code, message) = error_parts(b, i.as_ref().err());
                        fb::ItemResult::create(
                            b,
                            &fb::ItemResultArgs {
                                code,
                                message,
                                created: false,
                            },
                        )
                    })
                    .collect();
                args.batch = Some(b.create_vector(&items));
            }
            Outcome::Deadline { deadline_ms } => {
                args.kind = fb::ResultKind::Deadline;
                args.deadline_ms = *deadline_ms;
            }
            Outcome::Lock(l) => {
                args.kind = fb::ResultKind::Lock;
                let la = match *l {
                    LockOutcome::Acquired {
                        token,
                        lease_deadline_ms,
                    } => fb::LockResultArgs {
                        kind: fb::LockOutcomeKind::Acquired,
                        token,
                        lease_deadline_ms,
                        ..Default::default()
                    },
                    LockOutcome::Queued {
                        position,
                        wait_deadline_ms,
                    } => fb::LockResultArgs {
                        kind: fb::LockOutcomeKind::Queued,
                        position,
                        lease_deadline_ms: wait_deadline_ms,
                        ..Default::default()
                    },
                    LockOutcome::NotAcquired { holder } => fb::LockResultArgs {
                        kind: fb::LockOutcomeKind::NotAcquired,
                        holder_client_id: holder,
                        ..Default::default()
                    },
                };
                args.lock = Some(fb::LockResult::create(b, &la));
            }
            Outcome::Expire { expired } => {
                args.kind = fb::ResultKind::Expire;
                args.expired = *expired;
            }
        },
    }
    fb::CommandResult::create(b, &args)
}

/// Encodes the result of a write for the client.
pub fn encode_write_result(r: &WriteResult) -> Bytes {
    with_write_result(r, Bytes::copy_from_slice)
}

/// [`encode_write_result`] handing the encoding to `done` instead of copying it out.
pub fn with_write_result<R>(r: &WriteResult, done: impl FnOnce(&[u8]) -> R) -> R {
    with_built(
        |b| {
            let root = build_write_result(b, r);
            b.finish(root, None);
        },
        done,
    )
}

/// Decodes a write result (verifier first; garbage gives `INVALID_COMMAND`).
pub fn decode_write_result(data: &[u8]) -> Result<WriteResult, KvError> {
    let r = flatbuffers::root::<fb::CommandResult<'_>>(data).map_err(|e| invalid("result", e))?;
    write_result_from_fb(&r)
}

pub(crate) fn write_result_from_fb(r: &fb::CommandResult<'_>) -> Result<WriteResult, KvError> {
    if r.code() != 0 {
        return Ok(WriteResult {
            index: r.index(),
            outcome: Err(error_from(r.code(), r.message())),
        });
    }
    let outcome = match r.kind() {
        fb::ResultKind::Done => Outcome::Done,
        fb::ResultKind::Put => Outcome::Put {
            created: r.created(),
        },
        fb::ResultKind::Mkdir => Outcome::Mkdir {
            created: r.created(),
        },
        fb::ResultKind::Batch => Outcome::Batch(
            r.batch()
                .map(|v| {
                    v.iter()
                        .map(|i| match i.code() {
                            0 => Ok(()),
                            c => Err(error_from(c, i.message())),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        fb::ResultKind::Deadline => Outcome::Deadline {
            deadline_ms: r.deadline_ms(),
        },
        fb::ResultKind::Lock => {
            let l = r
                .lock()
                .ok_or_else(|| invalid("result", "lock result without its body"))?;
            Outcome::Lock(match l.kind() {
                fb::LockOutcomeKind::Acquired => LockOutcome::Acquired {
                    token: l.token(),
                    lease_deadline_ms: l.lease_deadline_ms(),
                },
                fb::LockOutcomeKind::Queued => LockOutcome::Queued {
                    position: l.position(),
                    wait_deadline_ms: l.lease_deadline_ms(),
                },
                fb::LockOutcomeKind::NotAcquired => LockOutcome::NotAcquired {
                    holder: l.holder_client_id(),
                },
                other => {
                    return Err(invalid(
                        "result",
                        format!("unknown lock outcome {}", other.0),
                    ));
                }
            })
        }
        fb::ResultKind::Expire => Outcome::Expire {
            expired: r.expired(),
        },
        other => {
            return Err(invalid(
                "result",
                format!("unknown result kind {}", other.0),
            ));
        }
    };
    Ok(WriteResult {
        index: r.index(),
        outcome: Ok(outcome),
    })
}

// ----- reads -----

fn read_op_of(req: &ReadRequest) -> fb::ReadOp {
    match req {
        ReadRequest::Get(_) => fb::ReadOp::Get,
        ReadRequest::BatchGet(_) => fb::ReadOp::BatchGet,
        ReadRequest::List(_) | ReadRequest::ListPage(..) => fb::ReadOp::List,
        ReadRequest::LockInfo(_) => fb::ReadOp::LockInfo,
    }
}

/// Encodes a read request.
pub fn encode_read_request(req: &ReadRequest) -> Bytes {
    with_read_request(req, Bytes::copy_from_slice)
}

/// [`encode_read_request`] handing the encoding to `done` instead of copying it out.
pub fn with_read_request<R>(req: &ReadRequest, done: impl FnOnce(&[u8]) -> R) -> R {
    with_built(|b| build_read_request(b, req), done)
}

fn build_read_request(b: &mut FlatBufferBuilder<'static>, req: &ReadRequest) {
    let (key, keys) = match req {
        ReadRequest::Get(k)
        | ReadRequest::List(k)
        | ReadRequest::ListPage(k, _)
        | ReadRequest::LockInfo(k) => (Some(b.create_vector(k)), None),
        ReadRequest::BatchGet(ks) => (None, Some(key_list(b, ks))),
    };
    let page = match req {
        ReadRequest::ListPage(_, p) => {
            let start_after = Some(b.create_vector(&p.start_after));
            Some(fb::ListPage::create(
                b,
                &fb::ListPageArgs {
                    start_after,
                    limit: p.limit,
                },
            ))
        }
        _ => None,
    };
    let root = fb::ReadRequest::create(
        b,
        &fb::ReadRequestArgs {
            op: read_op_of(req),
            keys,
            key,
            page,
        },
    );
    b.finish(root, None);
}

/// Decodes a read request, copying its keys.
pub fn decode_read_request(data: &[u8]) -> Result<ReadRequest, KvError> {
    let r =
        flatbuffers::root::<fb::ReadRequest<'_>>(data).map_err(|e| invalid("read request", e))?;
    let keys = || -> Vec<Bytes> {
        r.keys()
            .map(|v| v.iter().map(|k| bytes_of(&Copied, k.key())).collect())
            .unwrap_or_default()
    };
    let one = || -> Result<Bytes, KvError> {
        if let Some(k) = r.key() {
            if r.keys().is_some() {
                return Err(invalid("read request", "both key and keys are set"));
            }
            return Ok(bytes_of(&Copied, Some(k)));
        }
        match <[Bytes; 1]>::try_from(keys()) {
            Ok([k]) => Ok(k),
            Err(v) => Err(invalid(
                "read request",
                format!("expected exactly one key, got {}", v.len()),
            )),
        }
    };
    Ok(match r.op() {
        fb::ReadOp::Get => ReadRequest::Get(one()?),
        fb::ReadOp::List => match r.page() {
            None => ReadRequest::List(one()?),
            Some(p) => ReadRequest::ListPage(
                one()?,
                ListPage {
                    start_after: bytes_of(&Copied, p.start_after()),
                    limit: p.limit(),
                },
            ),
        },
        fb::ReadOp::LockInfo => ReadRequest::LockInfo(one()?),
        fb::ReadOp::BatchGet if r.key().is_some() => {
            return Err(invalid(
                "read request",
                "a batch get lists its keys in keys",
            ));
        }
        fb::ReadOp::BatchGet => ReadRequest::BatchGet(keys()),
        other => {
            return Err(invalid(
                "read request",
                format!("unknown read op {}", other.0),
            ));
        }
    })
}

fn build_node<'b>(b: &mut FlatBufferBuilder<'b>, n: &NodeView) -> WIPOffset<fb::NodeInfo<'b>> {
    let key = Some(b.create_vector(&n.key));
    let value = Some(b.create_vector(&n.value));
    let meta = fb::NodeMeta::new(
        n.create_index,
        n.create_time_ms,
        n.update_index,
        n.update_time_ms,
        n.ttl.map_or(0, |t| t.owner),
        n.ttl.map_or(0, |t| t.deadline_ms),
        state_to_fb(n.state),
        n.ttl.is_some(),
    );
    fb::NodeInfo::create(
        b,
        &fb::NodeInfoArgs {
            key,
            value,
            meta: Some(&meta),
        },
    )
}

/// A node of an answer; its key is `known` when that is the same key (the
/// key a get asked for), so it is not copied again.
fn node_from_fb(n: &fb::NodeInfo<'_>, known: Option<&Bytes>) -> Result<NodeView, KvError> {
    let key = match (known, n.key()) {
        (Some(k), Some(v)) if v.bytes() == &k[..] => k.clone(),
        (_, v) => bytes_of(&Copied, v),
    };
    let m = n.meta();
    Ok(NodeView {
        key,
        state: state_from_fb(m.state())?,
        value: bytes_of(&Copied, n.value()),
        create_index: m.create_index(),
        create_time_ms: m.create_time_ms(),
        update_index: m.update_index(),
        update_time_ms: m.update_time_ms(),
        ttl: m.temp().then(|| TtlView {
            owner: m.ttl_owner(),
            deadline_ms: m.ttl_deadline_ms(),
        }),
    })
}

fn build_item<'b>(
    b: &mut FlatBufferBuilder<'b>,
    item: Result<Option<&NodeView>, &KvError>,
) -> WIPOffset<fb::ReadItem<'b>> {
    let (code, message) = error_parts(b, item.err());
    let node = match item {
        Ok(Some(n)) => Some(build_node(b, n)),
        _ => None,
    };
    fb::ReadItem::create(
        b,
        &fb::ReadItemArgs {
            code,
            message,
            node,
        },
    )
}

/// Encodes a read's answer (as returned by `KvStateMachine::read`) for `req`.
pub fn encode_read_result(
    req: &ReadRequest,
    r: &ReadResult<Result<ReadResponse, KvError>>,
) -> Bytes {
    with_read_result(req, r, Bytes::copy_from_slice)
}

/// [`encode_read_result`] handing the encoding to `done` instead of copying it out.
pub fn with_read_result<R>(
    req: &ReadRequest,
    r: &ReadResult<Result<ReadResponse, KvError>>,
    done: impl FnOnce(&[u8]) -> R,
) -> R {
    with_built(|b| build_read_result(b, req, r), done)
}

fn build_read_result(
    b: &mut FlatBufferBuilder<'static>,
    req: &ReadRequest,
    r: &ReadResult<Result<ReadResponse, KvError>>,
) {
    let mut args = fb::ReadResultArgs {
        index: r.index,
        op: read_op_of(req),
        ..Default::default()
    };
    match &r.data {
        Err(e) => {
            let (code, message) = error_parts(b, Some(e));
            args.code = code;
            args.message = message;
        }
        Ok(ReadResponse::Get(n)) => {
            args.node = n.as_ref().map(|n| build_node(b, n));
        }
        Ok(ReadResponse::BatchGet(items)) => {
            let items: Vec<_> = items
                .iter()
                .map(|i| build_item(b, i.as_ref().map(Option::as_ref)))
                .collect();
            args.items = Some(b.create_vector(&items));
        }
        Ok(ReadResponse::List(nodes)) => {
            let items: Vec<_> = nodes.iter().map(|n| build_item(b, Ok(Some(n)))).collect();
            args.items = Some(b.create_vector(&items));
        }
        Ok(ReadResponse::ListPage { nodes, more }) => {
            let items: Vec<_> = nodes.iter().map(|n| build_item(b, Ok(Some(n)))).collect();
            args.items = Some(b.create_vector(&items));
            args.paged = true;
            args.more = *more;
        }
        Ok(ReadResponse::LockInfo(l)) => {
            if let Some(l) = l {
                let (holder_client_id, token, lease_deadline_ms) = l.holder.unwrap_or((0, 0, 0));
                args.lock = Some(fb::LockInfo::create(
                    b,
                    &fb::LockInfoArgs {
                        held: l.holder.is_some(),
                        holder_client_id,
                        token,
                        lease_deadline_ms,
                        waiters: l.waiters,
                    },
                ));
            }
        }
    }
    let root = fb::ReadResult::create(b, &args);
    b.finish(root, None);
}

/// Decodes a read's answer.
pub fn decode_read_result(
    data: &[u8],
) -> Result<ReadResult<Result<ReadResponse, KvError>>, KvError> {
    decode_read_result_keyed(data, None)
}

/// [`decode_read_result`] for the answer to a get of `key`: the node's key
/// is `key` itself, not a copy (when the answer names the same key).
pub fn decode_get_result(
    data: &[u8],
    key: &Bytes,
) -> Result<ReadResult<Result<ReadResponse, KvError>>, KvError> {
    decode_read_result_keyed(data, Some(key))
}

fn decode_read_result_keyed(
    data: &[u8],
    known: Option<&Bytes>,
) -> Result<ReadResult<Result<ReadResponse, KvError>>, KvError> {
    let r = flatbuffers::root::<fb::ReadResult<'_>>(data).map_err(|e| invalid("read result", e))?;
    if r.code() != 0 {
        return Ok(ReadResult {
            index: r.index(),
            data: Err(error_from(r.code(), r.message())),
        });
    }
    let item = |i: fb::ReadItem<'_>| -> Result<Result<Option<NodeView>, KvError>, KvError> {
        Ok(match i.code() {
            0 => Ok(match i.node() {
                Some(n) => Some(node_from_fb(&n, known)?),
                None => None,
            }),
            c => Err(error_from(c, i.message())),
        })
    };
    if r.op() == fb::ReadOp::Get {
        // The common read: the node itself, no list of items.
        if r.items().is_some() {
            return Err(invalid("read result", "a get answered with items"));
        }
        let node = match r.node() {
            Some(n) => Some(node_from_fb(&n, known)?),
            None => None,
        };
        return Ok(ReadResult {
            index: r.index(),
            data: Ok(ReadResponse::Get(node)),
        });
    }
    let mut items = Vec::new();
    for i in r.items().iter().flatten() {
        items.push(item(i)?);
    }
    let data = match r.op() {
        // Answered above; listed so the match stays exhaustive over known ops.
        fb::ReadOp::Get => return Err(invalid("read result", "get decoded twice")),
        fb::ReadOp::BatchGet => ReadResponse::BatchGet(items),
        fb::ReadOp::List => {
            let nodes = items
                .into_iter()
                .map(|i| {
                    i.and_then(|n| {
                        n.ok_or_else(|| invalid("read result", "list item without node"))
                    })
                })
                .collect::<Result<_, _>>()?;
            if r.paged() {
                ReadResponse::ListPage {
                    nodes,
                    more: r.more(),
                }
            } else {
                ReadResponse::List(nodes)
            }
        }
        fb::ReadOp::LockInfo => ReadResponse::LockInfo(r.lock().map(|l| {
            LockView {
                holder: l
                    .held()
                    .then(|| (l.holder_client_id(), l.token(), l.lease_deadline_ms())),
                waiters: l.waiters(),
            }
        })),
        other => {
            return Err(invalid(
                "read result",
                format!("unknown read op {}", other.0),
            ));
        }
    };
    Ok(ReadResult {
        index: r.index(),
        data: Ok(data),
    })
}

// ----- pushes -----

/// Encodes a watch event.
pub fn encode_watch_event(e: &WatchEvent) -> Bytes {
    let mut b = FlatBufferBuilder::with_capacity(64 + e.key.len() + e.value.len());
    let key = Some(b.create_vector(&e.key));
    let value = Some(b.create_vector(&e.value));
    let root = fb::WatchEvent::create(
        &mut b,
        &fb::WatchEventArgs {
            index: e.index,
            key,
            state: state_to_fb(e.state),
            value,
        },
    );
    b.finish(root, None);
    finish(b)
}

/// Decodes a watch event.
pub fn decode_watch_event(data: &[u8]) -> Result<WatchEvent, KvError> {
    let e = flatbuffers::root::<fb::WatchEvent<'_>>(data).map_err(|e| invalid("watch event", e))?;
    Ok(WatchEvent {
        index: e.index(),
        key: bytes_of(&Copied, e.key()),
        state: state_from_fb(e.state())?,
        value: bytes_of(&Copied, e.value()),
    })
}

/// Encodes a lock notification; `index` is the raft index that produced it.
pub fn encode_lock_notification(n: &LockNotification, index: u64) -> Bytes {
    let mut b = FlatBufferBuilder::with_capacity(64 + n.key.len());
    let key = Some(b.create_vector(&n.key));
    let (kind, token, lease_deadline_ms) = match n.kind {
        LockNotificationKind::Acquired {
            token,
            lease_deadline_ms,
        } => (fb::LockNotificationKind::Acquired, token, lease_deadline_ms),
        LockNotificationKind::WaitTimedOut => (fb::LockNotificationKind::WaitTimedOut, 0, 0),
    };
    let root = fb::LockNotification::create(
        &mut b,
        &fb::LockNotificationArgs {
            client_id: n.client_id,
            key,
            kind,
            token,
            lease_deadline_ms,
            index,
        },
    );
    b.finish(root, None);
    finish(b)
}

/// Decodes a lock notification and the raft index that produced it.
pub fn decode_lock_notification(data: &[u8]) -> Result<(LockNotification, u64), KvError> {
    let n = flatbuffers::root::<fb::LockNotification<'_>>(data)
        .map_err(|e| invalid("lock notification", e))?;
    let kind = match n.kind() {
        fb::LockNotificationKind::Acquired => LockNotificationKind::Acquired {
            token: n.token(),
            lease_deadline_ms: n.lease_deadline_ms(),
        },
        fb::LockNotificationKind::WaitTimedOut => LockNotificationKind::WaitTimedOut,
        other => {
            return Err(invalid(
                "lock notification",
                format!("unknown kind {}", other.0),
            ));
        }
    };
    let client_id: ClientId = n.client_id();
    Ok((
        LockNotification {
            client_id,
            key: bytes_of(&Copied, n.key()),
            kind,
        },
        n.index(),
    ))
}
