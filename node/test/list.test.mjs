// Listing: listPage's pages, startAfter and limit (checked before anything is
// sent), iterList, and list of a directory larger than one page.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import {
  startLocalCluster,
  KvClient,
  KvNode,
  NodeKind,
  InvalidArgumentError,
  InvalidKeyError,
  NotFoundError,
  NotDirError,
  TimeoutError,
  NetworkError,
} from 'dongting';

let cluster;
let kv;
// Nothing listens there: a call that passed the checks fails on the network.
let nowhere;

before(async () => {
  cluster = await startLocalCluster(3);
  kv = cluster.client({ timeoutMs: 30_000 });
  nowhere = new KvClient('127.0.0.1:1', { timeoutMs: 50 });
  await kv.mkdir('p');
  await kv.mkdir('p.d');
  await kv.batchPut([
    ['p.d.a', '1'],
    ['p.d.b', '2'],
    ['p.d.c', '3'],
    ['p.d.d', '4'],
  ]);
  await kv.mkdir('p.d.e');
});

after(async () => {
  await nowhere?.close();
  await kv?.close();
  await cluster?.stop();
});

const names = (nodes) => nodes.map((n) => n.name);

/** `{ names, more }` of a page. */
async function page(dir, options) {
  const p = await kv.listPage(dir, options);
  assert.deepEqual(Object.keys(p).sort(), ['more', 'nodes']);
  assert.equal(typeof p.more, 'boolean');
  assert.ok(p.nodes.every((n) => n instanceof KvNode));
  return { names: names(p.nodes), more: p.more };
}

test('pages of 2 over 5 children', async () => {
  assert.deepEqual(await page('p.d', { limit: 2 }), { names: ['a', 'b'], more: true });
  assert.deepEqual(await page('p.d', { startAfter: 'p.d.b', limit: 2 }), { names: ['c', 'd'], more: true });
  assert.deepEqual(await page('p.d', { startAfter: 'p.d.d', limit: 2 }), { names: ['e'], more: false });
  assert.deepEqual(await page('p.d', { startAfter: 'p.d.e', limit: 2 }), { names: [], more: false });
  assert.deepEqual(await page('p.d', { startAfter: Buffer.from('p.d.a'), limit: 2n }), { names: ['b', 'c'], more: true });
});

test('a page holds the same nodes as list', async () => {
  const { nodes } = await kv.listPage('p.d', { limit: 5 });
  const all = await kv.list('p.d');
  assert.deepEqual(nodes, all);
  assert.equal(nodes[0].key, 'p.d.a');
  assert.equal(nodes[0].text, '1');
  assert.equal(nodes[0].kind, NodeKind.VALUE);
  assert.ok(nodes[4].isDir);
  assert.ok(nodes[0].updateIndex > 0);
});

test('startAfter between two keys starts at the next one', async () => {
  assert.deepEqual(await page('p.d', { startAfter: 'p.d.bb', limit: 2 }), { names: ['c', 'd'], more: true });
  assert.deepEqual(await page('p.d', { startAfter: 'p.d.bb' }), { names: ['c', 'd', 'e'], more: false });
  assert.deepEqual(await page('p.d', { startAfter: 'p.d.0' }), { names: ['a', 'b', 'c', 'd', 'e'], more: false });
});

test('limit 0 and no limit are the default; 10000 is taken', async () => {
  for (const options of [undefined, {}, { limit: 0 }, { limit: 0n }, { startAfter: '', limit: 10_000 }, { group: 0 }]) {
    assert.deepEqual(await page('p.d', options), { names: ['a', 'b', 'c', 'd', 'e'], more: false }, inspect(options));
  }
  assert.deepEqual(await page('p.d.e'), { names: [], more: false });
});

const show = (v) => (typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : v !== null && typeof v === 'object' ? v.constructor.name : String(v));

function refused(what, shown) {
  return (e) => {
    assert.ok(e instanceof InvalidArgumentError, `${e && e.name}: ${e && e.message}`);
    assert.equal(e.code, 900, e.message);
    assert.equal(e.codeName, 'INVALID_ARGUMENT');
    assert.ok(e.message.startsWith(`${what} must be`), e.message);
    assert.ok(e.message.endsWith(`got ${shown}`), e.message);
    return true;
  };
}

test('a limit out of range, or not an integer, is refused before anything is sent', async () => {
  for (const bad of [10_001, -1, 1.5, '3', NaN, Infinity, -Infinity, 2 ** 53, 10_001n, -1n, null, true, {}]) {
    const r = refused('limit', show(bad));
    await assert.rejects(nowhere.listPage('p.d', { limit: bad }), r);
    await assert.rejects(kv.listPage('p.d', { limit: bad }), r);
    await assert.rejects(nowhere.iterList('p.d', { limit: bad }).next(), r);
  }
  await assert.rejects(kv.listPage('p.d', { limit: 10_001 }), (e) => e.message === 'limit must be an integer between 0 and 10000, got 10001');
  await assert.rejects(nowhere.listPage('p.d', { limit: 10_000 }), (e) => e instanceof TimeoutError || e instanceof NetworkError);
});

test('other arguments are checked too', async () => {
  await assert.rejects(nowhere.listPage('p.d', { startAfter: 5 }), (e) => e instanceof InvalidArgumentError && e.message === 'startAfter must be a string or bytes, not number');
  await assert.rejects(nowhere.listPage(7), (e) => e instanceof InvalidArgumentError && e.message === 'dir must be a string or bytes, not number');
  await assert.rejects(nowhere.listPage('p.d', { group: -1 }), refused('group', '-1'));
  await assert.rejects(kv.listPage('p.d', { startAfter: 'p..d', limit: 2 }), InvalidKeyError);
});

test('a missing directory is NOT_FOUND, a value is NOT_DIR', async () => {
  await assert.rejects(kv.listPage('p.none', { limit: 2 }), (e) => e instanceof NotFoundError && e.codeName === 'NOT_FOUND');
  await assert.rejects(kv.listPage('p.d.a'), (e) => e instanceof NotDirError && e.codeName === 'NOT_DIR');
  await assert.rejects(kv.iterList('p.none').next(), NotFoundError);
});

test('iterList walks every page', async () => {
  for (const limit of [1, 2, 3, 5, 0]) {
    const got = [];
    for await (const n of kv.iterList('p.d', { limit })) {
      assert.ok(n instanceof KvNode);
      got.push(n.name);
    }
    assert.deepEqual(got, ['a', 'b', 'c', 'd', 'e'], `limit ${limit}`);
  }
  const rest = [];
  for await (const n of kv.iterList('p.d', { startAfter: 'p.d.c', limit: 1 })) rest.push(n.name);
  assert.deepEqual(rest, ['d', 'e']);
  const empty = [];
  for await (const n of kv.iterList('p.d.e')) empty.push(n);
  assert.deepEqual(empty, []);
  // Breaking out early stops reading pages.
  for await (const n of kv.iterList('p.d', { limit: 2 })) {
    assert.equal(n.name, 'a');
    break;
  }
});

test('list returns all 12,000 children of a directory, in order', async () => {
  const N = 12_000;
  await kv.mkdir('p.big');
  const keys = Array.from({ length: N }, (_, i) => `p.big.k${String(i).padStart(5, '0')}`);
  for (let i = 0; i < N; i += 10_000) {
    const chunk = keys.slice(i, i + 10_000).map((k, j) => [k, `v${i + j}`]);
    const w = await kv.batchPut(chunk);
    assert.ok(w.codes.every((c) => c === 0));
  }
  const all = await kv.list('p.big');
  assert.equal(all.length, N);
  assert.deepEqual(all.map((n) => n.key), keys);
  assert.equal(all[N - 1].text, `v${N - 1}`);

  const first = await kv.listPage('p.big');
  assert.equal(first.nodes.length, 1000, 'the default page holds 1000');
  assert.equal(first.more, true);
  const big = await kv.listPage('p.big', { limit: 10_000 });
  assert.equal(big.nodes.length, 10_000);
  assert.equal(big.more, true);
  const last = await kv.listPage('p.big', { startAfter: big.nodes.at(-1).key, limit: 10_000 });
  assert.equal(last.nodes.length, 2000);
  assert.equal(last.more, false);
  assert.equal(last.nodes.at(-1).key, keys.at(-1));

  let i = 0;
  for await (const n of kv.iterList('p.big', { limit: 5000 })) {
    assert.equal(n.key, keys[i]);
    i++;
  }
  assert.equal(i, N);
});
