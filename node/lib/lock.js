'use strict';
// Lock: a DtKV distributed lock with fencing tokens.

const { submit } = require('./completions');
const { fromThrown } = require('./errors');
const t = require('./types');

function asToken(c) {
  const tok = c.token === null || c.token === undefined ? 0n : c.token;
  return tok === 0n ? null : tok;
}

/**
 * A distributed lock on one key, made by `KvClient.createLock` and used
 * through that client's session. Each acquisition returns a fencing token
 * (a bigint, larger for every new holder of the key): pass it to the
 * resource the lock guards, which refuses tokens below the largest it saw.
 * A lease bounds how long a hold lasts when the holder stops renewing it.
 */
class Lock {
  #n;

  /** @internal */
  constructor(n, key) {
    this.#n = n;
    /** The lock's key. */
    this.key = key;
  }

  /**
   * Acquires the lock with a lease of `leaseMs` (more than 0, at most
   * 2592000000), waiting up to `waitTimeoutMs` (default 0: not at all; at
   * most 2592000000) while another client holds it. Resolves with the
   * fencing token, or null when the wait ended without the lock.
   */
  tryLock(leaseMs, waitTimeoutMs = 0) {
    return submit(asToken, (q, id) =>
      this.#n.tryLock(q, id, t.lease(leaseMs, 'leaseMs'), t.wait(waitTimeoutMs, 'waitTimeoutMs', t.MAX_TTL_MS)),
    );
  }

  /** Releases the lock or leaves its wait queue; resolves when this client neither holds nor waits. */
  unlock() {
    return submit(t.asVoid, (q, id) => this.#n.unlock(q, id));
  }

  /** Extends the lease to `leaseMs` from now; NotOwnerError when not held. */
  updateLease(leaseMs) {
    return submit(t.asVoid, (q, id) => this.#n.updateLease(q, id, t.lease(leaseMs, 'leaseMs')));
  }

  /** True while this client holds the lock by its own count of the lease (sends nothing). */
  isHeld() {
    return this.#wrap(() => this.#n.isHeld());
  }

  /** Milliseconds left of the lease by this client's count; 0 when not held. */
  leaseRestMillis() {
    return this.#wrap(() => this.#n.leaseRestMs());
  }

  /** The fencing token of the current hold, null when not held. */
  get token() {
    const tok = this.#wrap(() => this.#n.token());
    return tok === 0n ? null : tok;
  }

  /** Releases the lock if held; the handle stays usable. */
  close() {
    return this.unlock();
  }

  /** `await using lock = kv.createLock(...)` releases it at the end of the scope. */
  [Symbol.asyncDispose]() {
    return this.close();
  }

  #wrap(f) {
    try {
      return f();
    } catch (e) {
      throw fromThrown(e);
    }
  }
}

module.exports = { Lock };
