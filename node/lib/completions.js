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
  for (const c of queue.drain()) {
    const w = waiting.get(c.id);
    if (w === undefined) continue;
    waiting.delete(c.id);
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
