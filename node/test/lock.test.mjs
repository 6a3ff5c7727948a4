// Distributed locks against an embedded 3-node cluster.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLocalCluster, Lock, InvalidKeyError, InvalidArgumentError, NotOwnerError, IsLockError } from 'dongting';

let cluster;
let a;
let b;

before(async () => {
  cluster = await startLocalCluster(3);
  a = cluster.client();
  b = cluster.client();
  await a.mkdir('l');
});

after(async () => {
  await a?.close();
  await b?.close();
  await cluster?.stop();
});

test('one holder at a time; tokens increase', async () => {
  const la = a.createLock('l.mutex');
  const lb = b.createLock('l.mutex');
  assert.ok(la instanceof Lock);
  assert.equal(la.isHeld(), false);
  assert.equal(la.token, null);
  const t1 = await la.tryLock(30_000);
  assert.equal(typeof t1, 'bigint');
  assert.ok(t1 > 0n);
  assert.equal(la.isHeld(), true);
  assert.equal(la.token, t1);
  const rest = la.leaseRestMillis();
  assert.ok(rest > 20_000 && rest <= 30_000, `lease rest ${rest}`);
  // Held by a: b gets null without waiting, and after a short wait.
  assert.equal(await lb.tryLock(30_000), null);
  assert.equal(await lb.tryLock(30_000, 300), null);
  assert.equal(lb.isHeld(), false);
  // A lock node is not a value.
  await assert.rejects(a.put('l.mutex', 'v'), IsLockError);
  await la.updateLease(60_000);
  assert.ok(la.leaseRestMillis() > 30_000);
  await assert.rejects(lb.updateLease(1000), NotOwnerError);
  await la.unlock();
  assert.equal(la.isHeld(), false);
  const t2 = await lb.tryLock(30_000);
  assert.ok(t2 > t1, `${t2} after ${t1}`);
  await lb.unlock();
  const t3 = await la.tryLock(30_000);
  assert.ok(t3 > t2, `${t3} after ${t2}`);
  await la.close();
  assert.equal(la.isHeld(), false);
});

test('a waiter is promoted when the holder unlocks', async () => {
  const la = a.createLock('l.queue');
  const lb = b.createLock('l.queue');
  const t1 = await la.tryLock(30_000);
  let promoted = false;
  const waiting = lb.tryLock(30_000, 15_000).then((t) => {
    promoted = true;
    return t;
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(promoted, false, 'the waiter got the lock while it was held');
  const t0 = Date.now();
  await la.unlock();
  const t2 = await waiting;
  assert.ok(t2 !== null && t2 > t1, `${t2} after ${t1}`);
  assert.ok(Date.now() - t0 < 5000, `promotion took ${Date.now() - t0} ms`);
  assert.equal(lb.isHeld(), true);
  await lb.close();
});

test('explicit resource management releases the lock', async () => {
  const lb = b.createLock('l.scoped');
  {
    const la = a.createLock('l.scoped');
    assert.ok(await la.tryLock(30_000));
    await la[Symbol.asyncDispose]();
  }
  assert.ok(await lb.tryLock(30_000));
  await lb.close();
});

test('bad arguments are refused and send nothing', async () => {
  assert.throws(() => a.createLock('bad..key'), InvalidKeyError);
  assert.throws(() => a.createLock(42), InvalidArgumentError);
  const l = a.createLock('l.args');
  await assert.rejects(l.tryLock(0), InvalidArgumentError);
  await assert.rejects(l.tryLock(-5), InvalidArgumentError);
  await assert.rejects(l.tryLock(1000, -1), InvalidArgumentError);
  await assert.rejects(l.updateLease(0), InvalidArgumentError);
  assert.equal(l.isHeld(), false);
});
