// Processes that use the package exit promptly once they are done with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const pkg = fileURLToPath(new URL('..', import.meta.url));

/**
 * Runs `code` (an ES module) in a child node; resolves with its exit code, output and duration.
 * `DATA_DIR` in the code names a fresh directory this process removes afterwards, so a child
 * that exits without stopping its cluster leaves nothing behind.
 */
async function run(code, limitMs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dongting-exit-'));
  try {
    return await runIn(code.replaceAll('DATA_DIR', JSON.stringify(dir)), limitMs);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function runIn(code, limitMs) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: pkg, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the child did not exit within ${limitMs} ms; output:\n${out}`));
    }, limitMs);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, out, ms: Date.now() - t0 });
    });
  });
}

test('a child that uses a client and closes it exits promptly', async () => {
  const code = `
    import { startLocalCluster, KvClient } from 'dongting';
    const cluster = await startLocalCluster(1, { dataDir: DATA_DIR });
    const kv = new KvClient(cluster.addresses, { timeoutMs: 5000 });
    await kv.mkdir('x');
    await Promise.all(Array.from({ length: 100 }, (_, i) => kv.put('x.k' + i, 'v')));
    await kv.close();
    await cluster.stop();
    console.log('done', Date.now());
  `;
  const r = await run(code, 20_000);
  assert.equal(r.status, 0, r.out);
  const done = Number(/done (\d+)/.exec(r.out)[1]);
  // Exit follows the last line at once: nothing is left holding the loop.
  assert.ok(Date.now() - done < 3000, `exit took ${Date.now() - done} ms after the work ended`);
});

test('a child with an unclosed idle client still exits', async () => {
  const code = `
    import { KvClient } from 'dongting';
    const kv = new KvClient('127.0.0.1:1', { timeoutMs: 300 });
    try { await kv.get('a'); } catch (e) { console.log(e.codeName); }
  `;
  const r = await run(code, 15_000);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /TIMEOUT|NETWORK_ERROR/);
});

test('a running embedded server keeps the process alive until stopped', async () => {
  const code = `
    import { EmbeddedServer, startLocalCluster } from 'dongting';
    const cluster = await startLocalCluster(1, { dataDir: DATA_DIR });
    setTimeout(async () => { await cluster.stop(); console.log('stopped', Date.now()); }, 1500);
  `;
  const r = await run(code, 20_000);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /stopped/);
  assert.ok(r.ms >= 1500, `exited after ${r.ms} ms, before the server was stopped`);
});

test('a call in flight keeps the process alive until it settles', async () => {
  const code = `
    import { KvClient } from 'dongting';
    const kv = new KvClient('127.0.0.1:1', { timeoutMs: 1000 });
    kv.get('a').catch((e) => console.log('settled', e.codeName));
  `;
  const r = await run(code, 15_000);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /settled (TIMEOUT|NETWORK_ERROR)/);
});

test('a child that closes its watch and lock exits promptly', async () => {
  const code = `
    import { startLocalCluster } from 'dongting';
    const cluster = await startLocalCluster(1, { dataDir: DATA_DIR });
    const kv = cluster.client();
    const start = (await kv.mkdir('x')).index;
    const w = await kv.watch('x', { fromIndex: start });
    const loop = (async () => { let n = 0; for await (const _ of w) n++; return n; })();
    const lock = kv.createLock('x.lock');
    const token = await lock.tryLock(60000);
    await kv.put('x.a', '1');
    await new Promise((r) => setTimeout(r, 300));
    await w.close();
    console.log('events', await loop, 'token', token > 0n);
    await lock.close();
    await kv.close();
    await cluster.stop();
    console.log('done', Date.now());
  `;
  const r = await run(code, 30_000);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /events 2 token true/);
  const done = Number(/done (\d+)/.exec(r.out)[1]);
  assert.ok(Date.now() - done < 3000, `exit took ${Date.now() - done} ms after the work ended`);
});

test('a pending watch keeps the process alive until the client closes', async () => {
  const code = `
    import { startLocalCluster } from 'dongting';
    const cluster = await startLocalCluster(1, { dataDir: DATA_DIR });
    const kv = cluster.client();
    const w = await kv.watch('');
    const t0 = Date.now();
    // Only the iteration is pending: no timer, and the cluster is unref'd.
    cluster.servers.forEach((s) => s.unref());
    setTimeout(() => kv.close(), 1500).unref();
    let n = 0;
    for await (const _ of w) n++;
    console.log('ended', n, Date.now() - t0);
    await cluster.stop();
  `;
  const r = await run(code, 30_000);
  assert.equal(r.status, 0, r.out);
  const m = /ended 0 (\d+)/.exec(r.out);
  assert.ok(m, r.out);
  assert.ok(Number(m[1]) >= 1400, `the iteration ended after ${m[1]} ms, before the client closed`);
});

test('an unclosed watch that nobody iterates does not hold the process', async () => {
  const code = `
    import { startLocalCluster } from 'dongting';
    const cluster = await startLocalCluster(1, { dataDir: DATA_DIR });
    const kv = cluster.client();
    globalThis.w = await kv.watch('');
    globalThis.lock = kv.createLock('held');
    await globalThis.lock.tryLock(60000);
    cluster.servers.forEach((s) => s.unref());
    console.log('left', Date.now());
  `;
  const r = await run(code, 30_000);
  assert.equal(r.status, 0, r.out);
  const left = Number(/left (\d+)/.exec(r.out)[1]);
  assert.ok(Date.now() - left < 3000, `exit took ${Date.now() - left} ms after the work ended`);
});
