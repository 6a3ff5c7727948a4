'use strict';
// Hands results from the native IO threads to promises on this thread.
//
// Each call gets an id; the native side queues `(id, result)` when the call
// completes and wakes this thread once per burst, and `settle` resolves or
// rejects every promise it drained. The native queue holds the event loop
// open only while calls are in flight.

const native = require('./native');
const { fromInfo, fromThrown } = require('./errors');

const waiting = new Map();
let nextId = 0;

function settle() {
  const { flat, full } = queue.drain();
  for (let i = 0; i < flat.length; i += 5) {
    const id = flat[i];
    const w = waiting.get(id);
    if (w === undefined) continue;
    waiting.delete(id);
    const slot = flat[i + 1];
    // A plain write travels as numbers; anything else has its details in `full`.
    const c =
      slot < 0
        ? { kind: 1, index: flat[i + 2], created: flat[i + 3] === 1, deadlineMs: flat[i + 4], nodes: null, codes: null }
        : full[slot];
    if (c.error) {
      w.reject(fromInfo(c.error));
      continue;
    }
    let v;
    try {
      v = w.convert(c);
    } catch (e) {
      w.reject(e);
      continue;
    }
    w.resolve(v);
  }
}

const queue = new native.Completions(settle);

/**
 * Starts a native call: `start(queue, id)` registers it; the promise settles
 * with `convert(completion)` or the call's error.
 */
function submit(convert, start) {
  let id = nextId;
  while (waiting.has(id)) id = (id + 1) >>> 0;
  nextId = (id + 1) >>> 0;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject, convert });
    try {
      start(queue, id);
    } catch (e) {
      waiting.delete(id);
      reject(fromThrown(e));
    }
  });
}

/** Calls in flight (for tests and diagnostics). */
function pendingCalls() {
  return waiting.size;
}

module.exports = { submit, pendingCalls };
