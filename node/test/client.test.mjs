// Every operation of KvClient against an embedded 3-node cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startLocalCluster,
  KvClient,
  KvNode,
  NodeKind,
  ClosedError,
  DongtingError,
} from 'dongting';

let cluster;
let kv;
let other;

before(async () => {
  cluster = await startLocalCluster(3);
  kv = cluster.client();
  other = cluster.client();
  await kv.mkdir('t');
});

after(async () => {
  await kv?.close();
  await other?.close();
  await cluster?.stop();
});

describe('values', () => {
  test('put and get with strings and buffers', async () => {
    const w = await kv.put('t.s', 'blue');
    assert.equal(w.created, true);
    assert.ok(w.index > 0);
    const n = await kv.get('t.s');
    assert.ok(n instanceof KvNode);
    assert.equal(n.key, 't.s');
    assert.equal(n.name, 's');
    assert.ok(Buffer.isBuffer(n.value));
    assert.equal(n.text, 'blue');
    assert.equal(n.kind, NodeKind.VALUE);
    assert.ok(n.isValue);
    assert.equal(n.createIndex, w.index);

    const bin = Buffer.from([0, 1, 2, 255]);
    assert.equal((await kv.put(Buffer.from('t.b'), bin)).created, true);
    assert.deepEqual((await kv.get('t.b')).value, bin);
    await kv.put('t.b', new Uint8Array([7, 8]));
    assert.deepEqual((await other.get('t.b')).value, Buffer.from([7, 8]));
    assert.equal((await kv.put('t.b', 'x')).created, false);
    assert.equal(await kv.getText('t.b'), 'x');
    assert.equal(await kv.get('t.missing'), null);
    assert.equal(await kv.getText('t.missing'), null);
  });

  test('remove', async () => {
    await kv.put('t.r', 'v');
    const w = await kv.remove('t.r');
    assert.ok(w.index > 0);
    assert.equal(await kv.get('t.r'), null);
  });

  test('mkdir and list', async () => {
    assert.equal((await kv.mkdir('t.d')).created, true);
    assert.equal((await kv.mkdir('t.d')).created, false);
    await kv.put('t.d.b', '2');
    await kv.put('t.d.a', '1');
    await kv.mkdir('t.d.c');
    const d = await kv.get('t.d');
    assert.ok(d.isDir);
    const children = await kv.list('t.d');
    assert.deepEqual(children.map((n) => n.name), ['a', 'b', 'c']);
    assert.deepEqual(children.map((n) => n.kind), [NodeKind.VALUE, NodeKind.VALUE, NodeKind.DIR]);
    assert.deepEqual(await kv.list('t.d.c'), []);
    assert.ok((await kv.list()).some((n) => n.key === 't'));
  });

  test('explicit group', async () => {
    await kv.put('t.g', 'v', { group: 0 });
    assert.equal(await kv.getText('t.g', { group: 0 }), 'v');
  });
});

describe('batches', () => {
  test('batchPut, batchGet, batchRemove', async () => {
    const w = await kv.batchPut({ 't.ba': '1', 't.bb': '2' });
    assert.deepEqual(w.codes, [0, 0]);
    await kv.batchPut(new Map([['t.bc', Buffer.from('3')]]));
    await kv.batchPut([['t.bd', '4']]);
    const got = await kv.batchGet(['t.ba', 't.bb', 't.zz', 't.bc', 't.bd']);
    assert.deepEqual(
      got.map((n) => (n === null ? null : n.text)),
      ['1', '2', null, '3', '4'],
    );
    const r = await kv.batchRemove(['t.ba', 't.zz', 't.bc']);
    assert.deepEqual(r.codes, [0, 1002, 0]);
    const again = await kv.batchGet(['t.ba', 't.bb', 't.bc']);
    assert.deepEqual(again.map((n) => n && n.text), [null, '2', null]);
    const partial = await kv.batchPut([['t.x1', '1'], ['t.nodir.y', '2']]);
    assert.deepEqual(partial.codes, [0, 1009]);
  });
});

describe('compareAndSet', () => {
  test('create, swap, delete', async () => {
    await kv.compareAndSet('t.cas', '', 'v1');
    assert.equal(await kv.getText('t.cas'), 'v1');
    await kv.compareAndSet('t.cas', 'v1', Buffer.from('v2'));
    assert.equal(await kv.getText('t.cas'), 'v2');
    await kv.compareAndSet('t.cas', 'v2', '');
    assert.equal(await kv.get('t.cas'), null);
  });
});

describe('temporary nodes', () => {
  test('putTemp, updateTtl, expiry', async () => {
    const w = await kv.putTemp('t.tmp', 'v', 60_000);
    assert.ok(w.deadlineMs > Date.now() - 60_000);
    const n = await other.get('t.tmp');
    assert.equal(n.text, 'v');
    assert.equal(n.ttlOwner, kv.clientId);
    assert.equal(typeof kv.clientId, 'bigint');
    assert.notEqual(kv.clientId, other.clientId);
    const u = await kv.updateTtl('t.tmp', 120_000);
    assert.ok(u.deadlineMs >= w.deadlineMs);
    await kv.putTemp('t.short', 'v', 300);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await kv.get('t.short'), null);
  });

  test('makeTempDir removes its subtree on expiry', async () => {
    const w = await kv.makeTempDir('t.td', 300);
    assert.ok(w.deadlineMs > 0);
    await kv.put('t.td.child', 'v');
    assert.ok((await kv.get('t.td')).isDir);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await kv.get('t.td'), null);
    assert.equal(await kv.get('t.td.child'), null);
  });
});

describe('load', () => {
  test('1,000 concurrent puts', async () => {
    await kv.mkdir('t.many');
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => kv.put(`t.many.k${i}`, `v${i}`)));
    assert.equal(results.length, 1000);
    assert.ok(results.every((w) => w.created));
    const indexes = new Set(results.map((w) => w.index));
    assert.equal(indexes.size, 1000);
    const listed = await kv.list('t.many');
    assert.equal(listed.length, 1000);
    const some = await kv.batchGet(['t.many.k0', 't.many.k999']);
    assert.deepEqual(some.map((n) => n.text), ['v0', 'v999']);
  });
});

describe('shutdown', () => {
  test('a closed client rejects new calls with ClosedError', async () => {
    const c = cluster.client();
    await c.put('t.closed', 'v');
    const p = c.close();
    assert.equal(c.close(), p, 'close is idempotent');
    await p;
    await assert.rejects(c.get('t.closed'), (e) => e instanceof ClosedError && e.code === 13 && e.codeName === 'CLOSED');
  });

  test('asyncDispose closes', async () => {
    const c = cluster.client();
    await c[Symbol.asyncDispose]();
    await assert.rejects(c.put('t.x', 'v'), ClosedError);
  });

  test('an embedded node gives its metrics text', async () => {
    const c = cluster.client({ timeoutMs: 10_000 });
    try {
      await c.put('t.metrics', 'v');
      const texts = cluster.servers.map((s) => s.metrics());
      for (const m of texts) {
        assert.match(m, /dongting_group_has_leader\{group="0"\} 1/);
        assert.match(m.trimEnd(), /# EOF$/);
      }
      assert.equal(texts.filter((m) => m.includes('dongting_group_is_leader{group="0"} 1')).length, 1);
    } finally {
      await c.close();
    }
  });

  test('a stopped node leaves the others serving', async () => {
    const c = cluster.client({ timeoutMs: 10_000 });
    try {
      const follower = cluster.servers.find((s) => !s.isLeader(0));
      await follower.stop();
      assert.equal(follower.stopped, true);
      await follower.stop();
      await c.put('t.after-stop', 'v');
      assert.equal(await c.getText('t.after-stop'), 'v');
    } finally {
      await c.close();
    }
  });

  test('errors are DongtingErrors', async () => {
    await assert.rejects(kv.remove('t.never'), DongtingError);
  });
});
