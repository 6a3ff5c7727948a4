//! Write results: the outcome of an applied command as the client receives it.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::error::KvError;
use crate::fb;
use crate::types::{LockOutcome, Outcome, WriteResult};

use super::{error_from, error_parts, invalid, with_built};

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
