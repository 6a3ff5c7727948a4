//! Read requests and their answers.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::error::KvError;
use crate::fb;
use crate::sm::{ListPage, ReadRequest, ReadResponse};
use crate::types::{LockView, NodeView, ReadResult, TtlView};

use super::{
    Copied, bytes_of, error_from, error_parts, invalid, key_list, state_from_fb, state_to_fb,
    with_built,
};

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
