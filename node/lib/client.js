'use strict';

const native = require('./native');
const { submit } = require('./completions');
const { ClosedError, InvalidArgumentError, fromThrown } = require('./errors');
const t = require('./types');
const { openWatch } = require('./watch');
const { Lock } = require('./lock');

function servers(s) {
  if (typeof s === 'string') return s;
  if (Array.isArray(s) && s.every((x) => typeof x === 'string')) return s.join(',');
  throw new InvalidArgumentError(900, `servers must be "host:port,..." or an array of "host:port", not ${t.typeName(s)}`);
}

/**
 * A DtKV client.
 *
 * `servers` are service addresses: `"host:port,host:port"` or an array.
 * Every method returns a Promise; the call runs on the library's IO threads,
 * follows leader changes and retries what is safe to retry, for at most
 * `timeoutMs` (default 5000; 1 to 86400000). Keys are strings
 * (`"app.db.url"`) or UTF-8 bytes; values are strings or bytes and come back
 * as Buffers. Calls use group `group` (default 0) unless they pass
 * `{ group }` (an integer 0 to 4294967295). List pages hold at most `limit`
 * children, an integer 0 (the default, 1000) to 10000. TTLs and lock leases are
 * milliseconds, more than 0 and at most 2592000000 (30 days). A number out of
 * range, or not a number, throws (or rejects with) InvalidArgumentError
 * naming the argument and the value given (InvalidTtlError for a TTL of 0 or
 * above the maximum), before anything is sent; so does a server address
 * with port 0.
 */
class KvClient {
  #n;
  #closed = null;

  constructor(serverList, options = {}) {
    const { timeoutMs = 5000, group = 0 } = options;
    const ms = t.timeout(timeoutMs, 'timeoutMs');
    /** The raft group calls use unless they name one. */
    this.group = t.group(group);
    try {
      this.#n = new native.NativeClient(servers(serverList), ms);
    } catch (e) {
      throw fromThrown(e);
    }
  }

  /** The write session id (owner of this client's temporary nodes). */
  get clientId() {
    return this.#n.clientId;
  }

  #g(options) {
    return options && options.group !== undefined ? t.group(options.group) : this.group;
  }

  /** Creates or overwrites a value (its parent directory must exist). */
  put(key, value, options) {
    return submit(t.asWrite, (q, id) => this.#n.put(q, id, this.#g(options), t.bytes(key, 'key'), t.bytes(value, 'value')));
  }

  /** Reads a node (linearizable); null when the key does not exist. */
  get(key, options) {
    return submit(t.asGet, (q, id) => this.#n.get(q, id, this.#g(options), t.bytes(key, 'key')));
  }

  /** Reads a value as UTF-8 text; null when the key does not exist. */
  async getText(key, options) {
    const n = await this.get(key, options);
    return n === null ? null : n.text;
  }

  /** Removes a value or an empty directory; NotFoundError when absent. */
  remove(key, options) {
    return submit(t.asWrite, (q, id) => this.#n.remove(q, id, this.#g(options), t.bytes(key, 'key')));
  }

  /** Creates a directory; `created` is false when it existed. */
  mkdir(key, options) {
    return submit(t.asWrite, (q, id) => this.#n.mkdir(q, id, this.#g(options), t.bytes(key, 'key')));
  }

  /**
   * The children of a directory (`""`: the root), sorted by key: all of
   * them, however many, read page by page (each page at its own raft index).
   */
  list(dir = '', options) {
    return submit(t.asList, (q, id) => this.#n.list(q, id, this.#g(options), t.bytes(dir, 'dir')));
  }

  /**
   * One page of a directory's children, sorted by key: those whose key sorts
   * after the full key `startAfter` (default `""`: from the first child), at
   * most `limit` (default 0: the server's default, 1000; at most 10000).
   * Resolves to `{ nodes, more }`; `more` is true when children follow the
   * last node, whose `key` is then the next page's `startAfter`.
   */
  listPage(dir = '', options) {
    return submit(t.asPage, (q, id) => {
      const { startAfter = '', limit = 0 } = options ?? {};
      this.#n.listPage(q, id, this.#g(options), t.bytes(dir, 'dir'), t.bytes(startAfter, 'startAfter'), t.pageLimit(limit));
    });
  }

  /**
   * The children of a directory one by one, sorted by key, read a page of
   * `limit` at a time (`listPage` options; `startAfter` resumes after a key):
   * `for await (const node of kv.iterList('app'))`. Each page is read at its
   * own raft index, so the whole is not a snapshot.
   */
  async *iterList(dir = '', options) {
    let startAfter = (options ?? {}).startAfter ?? '';
    for (;;) {
      const page = await this.listPage(dir, { ...options, startAfter });
      yield* page.nodes;
      if (!page.more || page.nodes.length === 0) return;
      startAfter = page.nodes[page.nodes.length - 1].key;
    }
  }

  /**
   * Sets several keys in one raft entry (a Map, an object, or [key, value]
   * pairs); `codes` holds one result per key (0: done).
   */
  batchPut(entries, options) {
    return submit(t.asWrite, (q, id) => {
      const [ks, vs] = t.entries(entries);
      this.#n.batchPut(q, id, this.#g(options), ks, vs);
    });
  }

  /** Reads several keys: one node (or null) per key, in order. */
  batchGet(keys, options) {
    return submit(t.asBatchGet, (q, id) => this.#n.batchGet(q, id, this.#g(options), t.keys(keys)));
  }

  /** Removes several keys in one raft entry; one code per key. */
  batchRemove(keys, options) {
    return submit(t.asWrite, (q, id) => this.#n.batchRemove(q, id, this.#g(options), t.keys(keys)));
  }

  /**
   * Sets `newValue` if the current value is `expected` (`""`: the key must be
   * absent; `newValue` `""`: delete). Rejects with CasMismatchError otherwise.
   */
  compareAndSet(key, expected, newValue, options) {
    return submit(t.asWrite, (q, id) =>
      this.#n.compareAndSet(
        q,
        id,
        this.#g(options),
        t.bytes(key, 'key'),
        t.bytes(expected, 'expected'),
        t.bytes(newValue, 'newValue'),
      ),
    );
  }

  /**
   * A temporary value owned by this client, removed `ttlMs` after this write
   * unless re-armed; `deadlineMs` is its expiry.
   */
  putTemp(key, value, ttlMs, options) {
    return submit(t.asWrite, (q, id) =>
      this.#n.putTemp(q, id, this.#g(options), t.bytes(key, 'key'), t.bytes(value, 'value'), t.ttl(ttlMs, 'ttlMs')),
    );
  }

  /** A temporary directory whose subtree is removed when its TTL passes. */
  makeTempDir(key, ttlMs, options) {
    return submit(t.asWrite, (q, id) =>
      this.#n.makeTempDir(q, id, this.#g(options), t.bytes(key, 'key'), t.ttl(ttlMs, 'ttlMs')),
    );
  }

  /** Re-arms a temporary node's TTL from now (owner only). */
  updateTtl(key, ttlMs, options) {
    return submit(t.asWrite, (q, id) =>
      this.#n.updateTtl(q, id, this.#g(options), t.bytes(key, 'key'), t.ttl(ttlMs, 'ttlMs')),
    );
  }

  /**
   * Watches `keys` (one key or an array; each covers itself and every key
   * under it, `""` the whole tree) for writes with a raft index above
   * `fromIndex` (default 0: from the serving node's applied index; pass the
   * index of a write to see everything after it). Resolves with a `Watch`
   * once a server accepted it.
   */
  watch(keys, options = {}) {
    const { fromIndex = 0 } = options;
    const list = typeof keys === 'string' || ArrayBuffer.isView(keys) ? [keys] : keys;
    return Promise.resolve().then(() => {
      const from = t.integer(fromIndex, 'fromIndex', 0, Number.MAX_SAFE_INTEGER);
      const ks = t.keys(list);
      if (ks.length === 0) throw new InvalidArgumentError(900, 'watch needs at least one key');
      return openWatch(this.#n, this.#g(options), ks, from);
    });
  }

  /**
   * A handle on the distributed lock at `key` (nothing is sent until
   * `tryLock`). Throws InvalidKeyError for a key that breaks the key rules.
   */
  createLock(key, options) {
    try {
      return new Lock(this.#n.createLock(this.#g(options), t.bytes(key, 'key')), typeof key === 'string' ? key : Buffer.from(key).toString());
    } catch (e) {
      throw fromThrown(e);
    }
  }

  /**
   * Closes the client: new calls reject with ClosedError; connections close
   * once calls in flight finish (up to one second). Idempotent. Afterwards
   * the client keeps nothing alive.
   */
  close() {
    if (this.#closed === null) this.#closed = submit(t.asVoid, (q, id) => this.#n.close(q, id));
    return this.#closed;
  }

  /** `await using kv = new KvClient(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose]() {
    return this.close();
  }
}

module.exports = { KvClient, ClosedError };
