'use strict';
// Watch: a DtKV watch stream as an async iterator.

const native = require('./native');
const { submit } = require('./completions');
const { ClosedError } = require('./errors');
const t = require('./types');

// How long one native read waits before the iterator asks again (a close
// ends a read in flight at once). Bounds how stale lastIndex gets; an idle
// watch costs one wake-up per period while someone iterates.
const POLL_MS = 250;

function asEvent(c) {
  const e = c.event;
  if (e === null || e === undefined) return { event: null, lastIndex: c.lastIndex };
  const ev = e.compacted
    ? { compacted: true, index: e.index, historyFloor: e.historyFloor }
    : { index: e.index, key: e.key, kind: e.kind, value: e.value };
  return { event: ev, lastIndex: c.lastIndex };
}

/**
 * A watch on keys of one group, made by `KvClient.watch`. Iterate it with
 * `for await (const ev of watch)`: each change is `{ index, key, kind, value }`
 * (`key` and `value` Buffers, `kind` a NodeKind; `kind` ABSENT for a removal),
 * and a gap in the server's history is `{ compacted: true, index,
 * historyFloor }` (re-read the watched keys; events continue above `index`).
 * Events come once each, in raft index order, across reconnects.
 *
 * The watch holds the process open only while a `next()` is pending; the
 * iteration ends after `close()` or the client's `close()`.
 */
class Watch {
  #n;
  #ready;
  #closed = false;
  #closing = null;
  #lastIndex;

  /** @internal */
  constructor(n, ready, fromIndex) {
    this.#n = n;
    this.#ready = ready;
    this.#lastIndex = fromIndex;
  }

  /**
   * The highest raft index the watch is complete up to, as of the last item
   * or empty wait it delivered: a new watch from it resumes without
   * duplicates or gaps.
   */
  get lastIndex() {
    return this.#lastIndex;
  }

  /** True once `close()` was called or the client closed. */
  get closed() {
    return this.#closed;
  }

  /** The next item; `{ done: true }` once the watch or its client is closed. */
  async next() {
    await this.#ready;
    for (;;) {
      if (this.#closed) return { done: true, value: undefined };
      let r;
      try {
        r = await submit(asEvent, (q, id) => this.#n.next(q, id, POLL_MS));
      } catch (e) {
        if (e instanceof ClosedError) {
          this.#closed = true;
          return { done: true, value: undefined };
        }
        throw e;
      }
      if (r.lastIndex > this.#lastIndex) this.#lastIndex = r.lastIndex;
      if (r.event !== null && !this.#closed) return { done: false, value: r.event };
    }
  }

  /** Ends a `for await` loop early (`break`, `return`, a throw): closes the watch. */
  async return() {
    await this.close();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /**
   * Unregisters the watch; pending and later `next()` calls end the
   * iteration. Idempotent. Afterwards the watch keeps nothing alive.
   */
  close() {
    if (this.#closing === null) {
      this.#closed = true;
      this.#closing = this.#ready.then(
        () => submit(t.asVoid, (q, id) => this.#n.close(q, id)),
        () => undefined,
      );
    }
    return this.#closing;
  }

  /** `await using w = await kv.watch(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose]() {
    return this.close();
  }
}

/** Registers a watch; resolves once a server accepted it. */
async function openWatch(client, group, keys, fromIndex) {
  const n = new native.NativeWatch();
  const ready = submit(t.asVoid, (q, id) => client.watch(q, id, n, group, keys, fromIndex));
  await ready;
  return new Watch(n, ready, fromIndex);
}

module.exports = { Watch, openWatch };
