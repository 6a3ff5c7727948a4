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

function asPage(c) {
  return { nodes: asList(c), more: c.more === true };
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

/**
 * The longest call timeout (one day) and the longest TTL, lock lease and lock
 * wait (30 days), in milliseconds; the most children of one list page.
 */
const { MAX_TIMEOUT_MS, MAX_TTL_MS, MAX_PAGE_LIMIT } = require('./native');

/** A value as a message shows it: strings quoted, bigints with their `n`. */
function shown(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v !== null && typeof v === 'object') return typeName(v);
  return String(v);
}

/** `what must be RULE, got VALUE`, an InvalidArgumentError (900). */
function refuse(what, rule, v, code = 900) {
  const msg = `${what} must be ${rule}, got ${shown(v)}`;
  throw code === 900 ? new InvalidArgumentError(900, msg) : errorFromCode(code, `INVALID_TTL: ${msg}`);
}

/** A number (or bigint) of milliseconds, NaN refused; `rule` describes the range. */
function number(v, what, rule) {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || Number.isNaN(n)) refuse(what, rule, v);
  return n;
}

/** A non-negative, finite number of milliseconds (also accepts a bigint). */
function millis(v, what) {
  const n = number(v, what, 'a non-negative number of milliseconds');
  if (!Number.isFinite(n) || n < 0) refuse(what, 'a non-negative number of milliseconds', v);
  return n;
}

/** A call timeout: an integer 1 to MAX_TIMEOUT_MS (0 is no default). */
function timeout(v, what) {
  const rule = `an integer between 1 and ${MAX_TIMEOUT_MS}`;
  const n = number(v, what, rule);
  if (!Number.isInteger(n) || n < 1 || n > MAX_TIMEOUT_MS) refuse(what, rule, v);
  return n;
}

/** A wait: 0 (do not wait) to `max` milliseconds. */
function wait(v, what, max) {
  const rule = `between 0 and ${max} milliseconds`;
  const n = number(v, what, rule);
  if (!(n >= 0 && n <= max)) refuse(what, rule, v);
  return n;
}

/** A lock lease: more than 0, at most MAX_TTL_MS milliseconds. */
function lease(v, what) {
  const rule = `more than 0 and at most ${MAX_TTL_MS} milliseconds`;
  const n = number(v, what, rule);
  if (!(n > 0 && n <= MAX_TTL_MS)) refuse(what, rule, v);
  return n;
}

/**
 * A TTL: more than 0, at most MAX_TTL_MS milliseconds. Zero or a finite
 * number above the maximum is INVALID_TTL, as DtKV answers for them; a
 * negative or infinite one is no TTL at all (INVALID_ARGUMENT).
 */
function ttl(v, what) {
  const rule = `more than 0 and at most ${MAX_TTL_MS} milliseconds`;
  const n = number(v, what, rule);
  if (n < 0 || !Number.isFinite(n)) refuse(what, rule, v);
  if (!(n > 0 && n <= MAX_TTL_MS)) refuse(what, rule, v, 1022);
  return n;
}

/** An integer `lo` to `hi` (a number, or a bigint within the safe integers). */
function integer(v, what, lo, hi) {
  const n = typeof v === 'bigint' && v >= BigInt(lo) && v <= BigInt(hi) ? Number(v) : v;
  if (!Number.isInteger(n) || n < lo || n > hi) refuse(what, `an integer between ${lo} and ${hi}`, v);
  return n;
}

function group(g, what = 'group') {
  return integer(g, what, 0, 0xffffffff);
}

/** A list page's size: an integer 0 (the server's default, 1000) to MAX_PAGE_LIMIT. */
function pageLimit(v, what = 'limit') {
  return integer(v, what, 0, MAX_PAGE_LIMIT);
}

module.exports = {
  NodeKind,
  KvNode,
  asWrite,
  asGet,
  asList,
  asPage,
  asBatchGet,
  asVoid,
  bytes,
  keys,
  entries,
  millis,
  timeout,
  wait,
  lease,
  ttl,
  integer,
  group,
  pageLimit,
  typeName,
  MAX_TIMEOUT_MS,
  MAX_TTL_MS,
  MAX_PAGE_LIMIT,
};
