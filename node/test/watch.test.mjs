// Watches against an embedded 3-node cluster.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLocalCluster, NodeKind, Watch, InvalidKeyError, InvalidArgumentError } from 'dongting';

let cluster;
let kv;
let watcher;

before(async () => {
  cluster = await startLocalCluster(3);
  kv = cluster.client();
  watcher = cluster.client();
});

after(async () => {
  await kv?.close();
  await watcher?.close();
  await cluster?.stop();
});

/** The next `n` items of `w`, failing after `ms`. */
async function take(w, n, ms = 15_000) {
  const out = [];
  const timer = setTimeout(() => w.close(), ms);
  try {
    for (let i = 0; i < n; i++) {
      const r = await w.next();
      assert.equal(r.done, false, `the watch ended after ${out.length} of ${n} items`);
      out.push(r.value);
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

test('events come in order with the indexes of their writes', async () => {
  const start = (await kv.mkdir('w1')).index;
  const w = await watcher.watch('w1.k', { fromIndex: start });
  assert.ok(w instanceof Watch);
  const idx = [];
  idx.push((await kv.put('w1.k', 'a')).index);
  idx.push((await kv.put('w1.other', 'not watched')).index);
  idx.push((await kv.put('w1.k', Buffer.from([0, 1, 2]))).index);
  idx.push((await kv.remove('w1.k')).index);
  const evs = await take(w, 3);
  assert.deepEqual(
    evs.map((e) => e.index),
    [idx[0], idx[2], idx[3]],
  );
  assert.ok(evs.every((e) => Buffer.isBuffer(e.key) && e.key.toString() === 'w1.k' && Buffer.isBuffer(e.value)));
  assert.equal(evs[0].kind, NodeKind.VALUE);
  assert.equal(evs[0].value.toString(), 'a');
  assert.deepEqual([...evs[1].value], [0, 1, 2]);
  assert.equal(evs[2].kind, NodeKind.ABSENT);
  assert.equal(evs[2].value.length, 0);
  assert.ok(w.lastIndex >= idx[3]);
  await w.close();
  assert.equal(w.closed, true);
  assert.deepEqual(await w.next(), { done: true, value: undefined });
  await w.close();
});

test('a directory watch reports the directory and everything under it', async () => {
  const start = (await kv.mkdir('w2')).index;
  const w = await watcher.watch(['w2'], { fromIndex: start });
  const a = (await kv.mkdir('w2.sub')).index;
  const b = (await kv.put('w2.sub.x', '1')).index;
  const c = (await kv.put('w2.y', '2')).index;
  await kv.put('w2x', 'outside');
  const d = (await kv.remove('w2.y')).index;
  const seen = [];
  for await (const ev of w) {
    seen.push([ev.index, ev.key.toString(), ev.kind]);
    if (ev.index === d) break; // `break` closes the watch
  }
  assert.deepEqual(seen, [
    [a, 'w2.sub', NodeKind.DIR],
    [b, 'w2.sub.x', NodeKind.VALUE],
    [c, 'w2.y', NodeKind.VALUE],
    [d, 'w2.y', NodeKind.ABSENT],
  ]);
  assert.equal(w.closed, true);
});

test('close ends a pending for-await loop', async () => {
  const start = (await kv.mkdir('w3')).index;
  const w = await watcher.watch('w3', { fromIndex: start });
  const loop = (async () => {
    const got = [];
    for await (const ev of w) got.push(ev.index);
    return got;
  })();
  const i = (await kv.put('w3.a', '1')).index;
  // Wait until the loop has the event, then close it while it waits for more.
  for (let n = 0; n < 200 && w.lastIndex < i; n++) await new Promise((r) => setTimeout(r, 25));
  const t0 = Date.now();
  await w.close();
  assert.deepEqual(await loop, [i]);
  assert.ok(Date.now() - t0 < 3000, `close took ${Date.now() - t0} ms`);
});

test('a watch resumed from an index sees the rest once', async () => {
  const start = (await kv.mkdir('w4')).index;
  const idx = [];
  for (let i = 0; i < 6; i++) idx.push((await kv.put('w4.k' + (i % 2), String(i))).index);
  const w1 = await watcher.watch('w4', { fromIndex: start });
  const first = await take(w1, 3);
  assert.deepEqual(first.map((e) => e.index), idx.slice(0, 3));
  await w1.close();
  // Resume after the last event handled, with bigint accepted too.
  const w2 = await watcher.watch('w4', { fromIndex: BigInt(first[2].index) });
  idx.push((await kv.put('w4.k0', 'late')).index);
  const rest = await take(w2, 4);
  assert.deepEqual(rest.map((e) => e.index), idx.slice(3));
  assert.equal(rest[3].value.toString(), 'late');
  await w2[Symbol.asyncDispose]();
  assert.equal(w2.closed, true);
});

test('the client closing ends the iteration', async () => {
  const c = cluster.client();
  const start = (await kv.mkdir('w5')).index;
  const w = await c.watch('w5', { fromIndex: start });
  const loop = (async () => {
    let n = 0;
    for await (const _ of w) n++;
    return n;
  })();
  await c.close();
  assert.equal(await loop, 0);
  assert.equal(w.closed, true);
  await w.close();
});

test('bad arguments reject and register nothing', async () => {
  await assert.rejects(watcher.watch('bad..key'), InvalidKeyError);
  await assert.rejects(watcher.watch([]), InvalidArgumentError);
  await assert.rejects(watcher.watch('a', { fromIndex: -1 }), InvalidArgumentError);
  await assert.rejects(watcher.watch('a', { fromIndex: 'x' }), InvalidArgumentError);
  await assert.rejects(watcher.watch(42), InvalidArgumentError);
});
