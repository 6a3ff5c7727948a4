// Numeric arguments: every timeout, wait, group, index, TTL and lease out of
// range (or not a number) is refused with InvalidArgumentError naming the
// argument and the value given, before anything is sent; never a silent
// default or a value the native layer wraps around.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLocalCluster, KvClient, InvalidArgumentError, InvalidTtlError, TimeoutError, NetworkError, GroupNotFoundError } from 'dongting';

const MAX_TTL = 2_592_000_000; // ms: DtKV's longest TTL, lease and lock wait (30 days)
const MAX_TIMEOUT = 86_400_000; // ms: the longest call timeout (one day)
const NOT_NUMBERS = ['5', null, true, {}, [1]];

let cluster;
let kv;
// Nothing listens there: a call that passed the checks fails on the network.
let nowhere;

before(async () => {
  cluster = await startLocalCluster(3);
  kv = cluster.client();
  await kv.mkdir('a');
  nowhere = new KvClient('127.0.0.1:1', { timeoutMs: 50 });
});

after(async () => {
  await nowhere?.close();
  await kv?.close();
  await cluster?.stop();
});

/** An InvalidArgumentError (code 900, or 1022 for INVALID_TTL) whose message names `what` and ends with `got SHOWN`. */
function refused(what, shown, code = 900) {
  return (e) => {
    assert.ok(e instanceof InvalidArgumentError, `${e && e.name}: ${e && e.message}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e instanceof InvalidTtlError, code === 1022);
    assert.ok(e.message.startsWith(code === 1022 ? `INVALID_TTL: ${what} must be` : `${what} must be`), e.message);
    assert.ok(e.message.endsWith(`got ${shown}`), e.message);
    return true;
  };
}

const show = (v) => (typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : v !== null && typeof v === 'object' ? v.constructor.name : String(v));

function unsent(e) {
  assert.ok(e instanceof TimeoutError || e instanceof NetworkError, `${e.name}: ${e.message}`);
  return true;
}

test('a client timeout out of range is refused, 0 included', () => {
  for (const bad of [0, -1, 0.5, 1.5, NaN, Infinity, MAX_TIMEOUT + 1, 2 ** 40, ...NOT_NUMBERS]) {
    assert.throws(() => new KvClient('127.0.0.1:1', { timeoutMs: bad }), refused('timeoutMs', show(bad)));
  }
  for (const good of [1, MAX_TIMEOUT, 86_400_000n]) new KvClient('127.0.0.1:1', { timeoutMs: good }).close();
});

test('an address with port 0 is refused at once', () => {
  const t0 = Date.now();
  for (const bad of ['127.0.0.1:0', '127.0.0.1:1,localhost:0', ['127.0.0.1:1', '127.0.0.1:0']]) {
    assert.throws(
      () => new KvClient(bad, { timeoutMs: 60_000 }),
      (e) => e instanceof InvalidArgumentError && e.code === 900 && e.message.includes(':0" has port 0'),
    );
  }
  assert.ok(Date.now() - t0 < 5000);
});

test('a group out of range is refused everywhere it is taken', async () => {
  for (const bad of [-1, 2 ** 32, 2 ** 40, 1.5, NaN, '0', true, null, -1n]) {
    const r = refused('group', show(bad));
    assert.throws(() => new KvClient('127.0.0.1:1', { group: bad }), r);
    await assert.rejects(nowhere.get('k', { group: bad }), r);
    await assert.rejects(nowhere.putTemp('k', 'v', 1000, { group: bad }), r);
    await assert.rejects(nowhere.watch('k', { group: bad }), r);
    assert.throws(() => nowhere.createLock('k', { group: bad }), r);
  }
  await assert.rejects(kv.get('a', { group: 2 ** 32 - 1 }), GroupNotFoundError);
});

test('a TTL DtKV refuses is INVALID_TTL naming the value', async () => {
  for (const bad of [0, MAX_TTL + 1, 1e30]) {
    const r = refused('ttlMs', show(bad), 1022);
    await assert.rejects(nowhere.putTemp('k', 'v', bad), r);
    await assert.rejects(nowhere.makeTempDir('k', bad), r);
    await assert.rejects(nowhere.updateTtl('k', bad), r);
  }
});

test('a TTL that is no TTL is INVALID_ARGUMENT naming the value', async () => {
  for (const bad of [-5, -0.5, Infinity, -Infinity, NaN, ...NOT_NUMBERS]) {
    const r = refused('ttlMs', show(bad));
    await assert.rejects(nowhere.putTemp('k', 'v', bad), r);
    await assert.rejects(nowhere.makeTempDir('k', bad), r);
    await assert.rejects(nowhere.updateTtl('k', bad), r);
  }
});

test('the longest TTL is taken', async () => {
  assert.ok((await kv.putTemp('a.t', 'v', MAX_TTL)).deadlineMs > 0);
  assert.ok((await kv.updateTtl('a.t', BigInt(MAX_TTL))).deadlineMs > 0);
  await kv.remove('a.t');
  await assert.rejects(nowhere.putTemp('k', 'v', 0.5), unsent);
});

test('leases and lock waits out of range are refused', async () => {
  const l = nowhere.createLock('k');
  for (const bad of [0, -1, NaN, Infinity, MAX_TTL + 1, ...NOT_NUMBERS]) {
    const r = refused('leaseMs', show(bad));
    await assert.rejects(l.tryLock(bad), r);
    await assert.rejects(l.updateLease(bad), r);
  }
  for (const bad of [-1, NaN, Infinity, MAX_TTL + 1, ...NOT_NUMBERS]) {
    await assert.rejects(l.tryLock(1000, bad), refused('waitTimeoutMs', show(bad)));
  }
  await assert.rejects(l.tryLock(MAX_TTL, MAX_TTL), unsent);
  const held = kv.createLock('a.l');
  assert.ok(await held.tryLock(MAX_TTL, MAX_TTL));
  await held.updateLease(MAX_TTL);
  await held.close();
});

test('a fromIndex out of range is refused', async () => {
  for (const bad of [-1, 1.5, NaN, 2 ** 53, 2n ** 64n, -1n, '3', null]) {
    await assert.rejects(nowhere.watch('k', { fromIndex: bad }), refused('fromIndex', show(bad)));
  }
});

test('server and cluster arguments are refused before anything starts', async () => {
  const s = cluster.servers[0];
  await assert.rejects(s.stop({ graceMs: -1 }), refused('graceMs', '-1'));
  assert.equal(s.stopped, false);
  await assert.rejects(startLocalCluster(-1), refused('nodes', '-1'));
  await assert.rejects(startLocalCluster(1, { groups: [0, -1] }), refused('groups', '-1'));
  await assert.rejects(startLocalCluster(1, { timeoutMs: NaN }), refused('timeoutMs', 'NaN'));
  await assert.rejects(cluster.waitReady(-1), refused('timeoutMs', '-1'));
});
