'use strict';
// Results: nodes, write results, and argument conversion.

const { InvalidArgumentError, errorFromCode } = require('./errors');

/** What a node is (stable numbers shared with the C API). */
const NodeKind = Object.freeze({ ABSENT: 0, VALUE: 1, DIR: 2, LOCK: 3 });

/** One DtKV node as read. */
class KvNode {
  constructor(n) {
    /** The full key (`a.b.c`). */
    this.key = n.key;
    /** The value as a Buffer (empty for directories). */
    this.value = n.value;
    /** NodeKind.VALUE, NodeKind.DIR or NodeKind.LOCK. */
    this.kind = n.kind;
    /** Raft index of the creation. */
    this.createIndex = n.createIndex;
    /** Leader wall-clock milliseconds of the creation. */
    this.createTimeMs = n.createTimeMs;
    /** Raft index of the last change. */
    this.updateIndex = n.updateIndex;
    /** Leader wall-clock milliseconds of the last change. */
    this.updateTimeMs = n.updateTimeMs;
    /** Temporary node: expiry deadline (leader wall-clock ms); 0 otherwise. */
    this.ttlDeadlineMs = n.ttlDeadlineMs;
    /** Temporary node: id of the owning client; 0n otherwise. */
    this.ttlOwner = n.ttlOwner;
  }

  /** The value decoded as UTF-8. */
  get text() {
    return this.value.toString('utf8');
  }

  /** The last segment of the key (`c` for `a.b.c`). */
  get name() {
    const i = this.key.lastIndexOf('.');
    return i < 0 ? this.key : this.key.slice(i + 1);
  }

  get isDir() {
    return this.kind === NodeKind.DIR;
  }

  get isValue() {
    return this.kind === NodeKind.VALUE;
  }
}

function asWrite(c) {
  return { index: c.index, created: c.created, deadlineMs: c.deadlineMs, codes: c.codes || [] };
}

function asGet(c) {
  return c.nodes && c.nodes.length > 0 ? new KvNode(c.nodes[0]) : null;
}

function asList(c) {
  return (c.nodes || []).map((n) => new KvNode(n));
}

function asBatchGet(c) {
  const nodes = c.nodes || [];
  const codes = c.codes || [];
  return nodes.map((n, i) => {
    if (codes[i]) throw errorFromCode(codes[i], `batchGet of ${JSON.stringify(n.key)} failed`);
    return n.kind === NodeKind.ABSENT ? null : new KvNode(n);
  });
}

function asVoid() {
  return undefined;
}

/** A key or value: a string (UTF-8) or bytes (Buffer, Uint8Array). */
function bytes(v, what) {
  if (typeof v === 'string' || v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new InvalidArgumentError(900, `${what} must be a string or bytes, not ${typeName(v)}`);
}

function typeName(v) {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v.constructor && v.constructor.name) || 'object';
  return typeof v;
}

function keys(list) {
  if (!Array.isArray(list)) throw new InvalidArgumentError(900, `keys must be an array, not ${typeName(list)}`);
  return list.map((k) => bytes(k, 'a key'));
}

/** `[keys, values]` of a Map, a plain object or an iterable of `[key, value]` pairs. */
function entries(e) {
  let pairs;
  if (e instanceof Map || Array.isArray(e)) pairs = e;
  else if (e !== null && typeof e === 'object' && typeof e[Symbol.iterator] !== 'function') pairs = Object.entries(e);
  else if (e !== null && typeof e === 'object') pairs = e;
  else throw new InvalidArgumentError(900, `entries must be a Map, an object or [key, value] pairs, not ${typeName(e)}`);
  const ks = [];
  const vs = [];
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new InvalidArgumentError(900, 'each entry must be a [key, value] pair');
    ks.push(bytes(pair[0], 'a key'));
    vs.push(bytes(pair[1], 'a value'));
  }
  return [ks, vs];
}

/** A non-negative integer number of milliseconds (also accepts a bigint). */
function millis(v, what) {
  if (typeof v === 'bigint') v = Number(v);
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new InvalidArgumentError(900, `${what} must be a non-negative number of milliseconds, not ${String(v)}`);
  }
  return v;
}

function group(g) {
  if (!Number.isInteger(g) || g < 0 || g > 0xffffffff) throw new InvalidArgumentError(900, `group must be an integer 0 to 4294967295, not ${String(g)}`);
  return g;
}

module.exports = { NodeKind, KvNode, asWrite, asGet, asList, asBatchGet, asVoid, bytes, keys, entries, millis, group, typeName };
