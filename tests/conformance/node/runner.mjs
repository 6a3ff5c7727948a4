// Conformance runner for Node: runs tests/conformance/scenarios.txt through
// the public API of the `dongting` package (see tests/conformance/README.md).
//
//   DT_SERVERS=127.0.0.1:p1,... node tests/conformance/node/runner.mjs
//
// Environment: DT_SERVERS (required), DT_GROUP (default 0), DT_SCENARIOS
// (default ../scenarios.txt), DT_LANG (default node).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KvClient, NodeKind, codeName } from '../../../node/index.mjs';

const lang = process.env.DT_LANG || 'node';
const group = Number(process.env.DT_GROUP || '0');
const scenariosPath = process.env.DT_SCENARIOS || fileURLToPath(new URL('../scenarios.txt', import.meta.url));

/** Scenarios of the file: `{ name, line, steps: [{ line, tokens }] }`. */
function parse(text) {
  const scenarios = [];
  let current = null;
  const problems = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (s === '' || s.startsWith('#')) return;
    const tokens = s.split(/[ \t]+/);
    if (tokens[0] === 'scenario') {
      if (tokens.length !== 2 || !/^[A-Za-z0-9_]+$/.test(tokens[1])) {
        problems.push(`line ${line}: bad scenario line`);
        current = null;
        return;
      }
      current = { name: tokens[1], line, steps: [] };
      scenarios.push(current);
      return;
    }
    if (current === null) {
      problems.push(`line ${line}: a step outside any scenario`);
      return;
    }
    current.steps.push({ line, tokens });
  });
  return { scenarios, problems };
}

/** `$P` and `{C*N}` replaced; the token `-` is the empty string. */
function expand(token, prefix) {
  if (token === '-') return '';
  return token.replaceAll('$P', prefix).replace(/\{(.)\*(\d+)\}/g, (_, c, n) => c.repeat(Number(n)));
}

function short(s) {
  return s.length > 40 ? `${s.slice(0, 20)}...(${s.length} chars)` : s;
}

/** What a call produced, in the words of the expectations. */
function describe(op, r, e) {
  if (e !== null) return e.codeName ? `error ${e.codeName}` : `exception ${e.message}`;
  switch (op) {
    case 'next_event':
      return eventWords(r).join(' ');
    case 'try_lock':
      return r === null ? 'not_locked' : 'locked';
    case 'get':
      if (r === null) return 'absent';
      if (r.kind === NodeKind.DIR) return 'dir';
      if (r.kind === NodeKind.LOCK) return 'lock';
      return `value ${short(r.text)}`;
    case 'list':
    case 'list_pages':
      return `children ${r.map((n) => n.name).join(' ')}`.trimEnd();
    case 'list_page':
      return `page ${r.more ? 'more' : 'end'} ${r.nodes.map((n) => n.name).join(' ')}`.trimEnd();
    case 'batch_get':
      return `values ${r.map((n) => (n === null ? '-' : short(n.text))).join(' ')}`;
    case 'batch_put':
    case 'batch_remove':
      return `ok, codes ${r.codes.map(codeName).join(' ')}`;
    default:
      return 'ok';
  }
}

function pairs(args) {
  if (args.length === 0 || args.length % 2 !== 0) throw new Error('batch_put needs key/value pairs');
  const out = [];
  for (let i = 0; i < args.length; i += 2) out.push([args[i], args[i + 1]]);
  return out;
}

function integer(s, what = 'a number of milliseconds') {
  if (!/^\d+$/.test(s)) throw new Error(`${JSON.stringify(s)} is not ${what}`);
  return Number(s);
}

/**
 * list_pages: every page of `limit` children, from the first, each starting
 * after the previous page's last key while the page says more follow.
 */
async function listPages(kv, dir, limit) {
  const all = [];
  let startAfter = '';
  for (;;) {
    const { nodes, more } = await kv.listPage(dir, { startAfter, limit });
    all.push(...nodes);
    if (!more) return all;
    if (nodes.length === 0) throw new Error(`a page of ${dir} after ${JSON.stringify(startAfter)} is empty yet says more follow`);
    startAfter = nodes[nodes.length - 1].key;
  }
}

/** Lock handles by client and key, made on a lock step's first use. */
const locks = new Map();

function lockOf(kv, who, key) {
  const id = `${who} ${key}`;
  let l = locks.get(id);
  if (l === undefined) {
    l = kv.createLock(key);
    locks.set(id, l);
  }
  return l;
}

/**
 * Watches by client and key: the watch and the `next()` a timed-out
 * next_event left waiting (kept, so no event is lost).
 */
const watches = new Map();

const STATES = { [NodeKind.ABSENT]: 'absent', [NodeKind.VALUE]: 'value', [NodeKind.DIR]: 'dir', [NodeKind.LOCK]: 'lock' };

/** The words of next_event's expectations for what it got. */
function eventWords(r) {
  if (r.none) return ['none'];
  if (r.compacted) return ['compacted'];
  const words = ['event', r.key.toString(), STATES[r.kind]];
  if (r.kind === NodeKind.VALUE) words.push(r.value.toString());
  return words;
}

async function nextEvent(s, ms) {
  if (s.pending === null) s.pending = s.watch.next();
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  const res = await Promise.race([s.pending, late]);
  clearTimeout(timer);
  if (res === null) return { none: true };
  s.pending = null;
  if (res.done) {
    // The stream ended: the watch was closed.
    const e = new Error('the watch is closed');
    e.codeName = 'CLOSED';
    throw e;
  }
  return res.value;
}

/** The call of one step, or an Error naming what is wrong with it. */
function call(kv, op, args, who) {
  const need = (n) => {
    if (args.length !== n) throw new Error(`${op} takes ${n} arguments, got ${args.length}`);
  };
  switch (op) {
    case 'put':
      need(2);
      return () => kv.put(args[0], args[1]);
    case 'get':
      need(1);
      return () => kv.get(args[0]);
    case 'remove':
      need(1);
      return () => kv.remove(args[0]);
    case 'mkdir':
      need(1);
      return () => kv.mkdir(args[0]);
    case 'list':
      need(1);
      return () => kv.list(args[0]);
    case 'list_page': {
      need(3);
      const limit = integer(args[2], 'a page limit');
      return () => kv.listPage(args[0], { startAfter: args[1], limit });
    }
    case 'list_pages': {
      need(2);
      const limit = integer(args[1], 'a page limit');
      return () => listPages(kv, args[0], limit);
    }
    case 'batch_put': {
      const p = pairs(args);
      return () => kv.batchPut(p);
    }
    case 'batch_get':
      return () => kv.batchGet(args);
    case 'batch_remove':
      return () => kv.batchRemove(args);
    case 'cas':
      need(3);
      return () => kv.compareAndSet(args[0], args[1], args[2]);
    case 'put_temp': {
      need(3);
      const ttl = integer(args[2]);
      return () => kv.putTemp(args[0], args[1], ttl);
    }
    case 'make_temp_dir': {
      need(2);
      const ttl = integer(args[1]);
      return () => kv.makeTempDir(args[0], ttl);
    }
    case 'update_ttl': {
      need(2);
      const ttl = integer(args[1]);
      return () => kv.updateTtl(args[0], ttl);
    }
    case 'try_lock': {
      need(3);
      const [lease, wait] = [integer(args[1]), integer(args[2])];
      return async () => lockOf(kv, who, args[0]).tryLock(lease, wait);
    }
    case 'unlock':
      need(1);
      return async () => lockOf(kv, who, args[0]).unlock();
    case 'update_lease': {
      need(2);
      const lease = integer(args[1]);
      return async () => lockOf(kv, who, args[0]).updateLease(lease);
    }
    case 'watch': {
      need(1);
      const id = `${who} ${args[0]}`;
      if (watches.has(id)) throw new Error(`client ${who} already watches ${args[0]}`);
      return async () => {
        watches.set(id, { watch: await kv.watch(args[0]), pending: null });
        return null;
      };
    }
    case 'next_event':
    case 'unwatch': {
      need(op === 'unwatch' ? 1 : 2);
      const s = watches.get(`${who} ${args[0]}`);
      if (s === undefined) throw new Error(`client ${who} does not watch ${args[0]}`);
      if (op === 'unwatch') return () => s.watch.close();
      const ms = integer(args[1]);
      return () => nextEvent(s, ms);
    }
    default:
      throw new Error(`unknown step ${JSON.stringify(op)}`);
  }
}

/** Null when the outcome meets the expectation, else why not. */
function check(op, expect, args, r, e) {
  const got = describe(op, r, e);
  const want = [expect, ...args].join(' ');
  const fail = () => `expected ${short(want)}, got ${got}`;
  switch (expect) {
    case 'ok':
      return e === null ? null : fail();
    case 'error': {
      if (args.length !== 1) throw new Error('error takes one NAME or NAME1|NAME2');
      return e !== null && args[0].split('|').includes(e.codeName) ? null : fail();
    }
    case 'value':
      if (op !== 'get' || args.length !== 1) throw new Error('value takes one value and goes with get');
      return e === null && r !== null && r.kind === NodeKind.VALUE && r.value.equals(Buffer.from(args[0])) ? null : fail();
    case 'absent':
      if (op !== 'get' || args.length !== 0) throw new Error('absent takes nothing and goes with get');
      return e === null && r === null ? null : fail();
    case 'dir':
      if (op !== 'get' || args.length !== 0) throw new Error('dir takes nothing and goes with get');
      return e === null && r !== null && r.kind === NodeKind.DIR ? null : fail();
    case 'lock':
      if (op !== 'get' || args.length !== 0) throw new Error('lock takes nothing and goes with get');
      return e === null && r !== null && r.kind === NodeKind.LOCK ? null : fail();
    case 'event':
    case 'none': {
      if (op !== 'next_event') throw new Error(`${expect} goes with next_event`);
      if (e !== null) return fail();
      const got = eventWords(r);
      const want = [expect, ...args];
      return got.length === want.length && got.every((w, i) => w === want[i]) ? null : fail();
    }
    case 'locked':
    case 'not_locked':
      if (op !== 'try_lock' || args.length !== 0) throw new Error(`${expect} takes nothing and goes with try_lock`);
      return e === null && (r !== null) === (expect === 'locked') ? null : fail();
    case 'children': {
      if (op !== 'list' && op !== 'list_pages') throw new Error('children goes with list or list_pages');
      if (e !== null) return fail();
      const names = r.map((n) => n.name);
      return names.length === args.length && names.every((n, i) => n === args[i]) ? null : fail();
    }
    case 'page': {
      if (op !== 'list_page') throw new Error('page goes with list_page');
      if (args[0] !== 'more' && args[0] !== 'end') throw new Error('page takes more or end, then the names');
      if (e !== null) return fail();
      const names = r.nodes.map((n) => n.name);
      const want = args.slice(1);
      const ok = r.more === (args[0] === 'more') && names.length === want.length && names.every((n, i) => n === want[i]);
      return ok ? null : fail();
    }
    case 'values': {
      if (op !== 'batch_get') throw new Error('values goes with batch_get');
      if (e !== null) return fail();
      const ok = r.length === args.length && r.every((n, i) => (args[i] === '' ? n === null : n !== null && n.value.equals(Buffer.from(args[i]))));
      return ok ? null : `expected ${short(['values', ...args.map((a) => a || '-')].join(' '))}, got ${got}`;
    }
    case 'codes': {
      if (op !== 'batch_put' && op !== 'batch_remove') throw new Error('codes goes with batch_put or batch_remove');
      if (e !== null) return fail();
      const names = r.codes.map(codeName);
      return names.length === args.length && names.every((n, i) => n === args[i]) ? null : fail();
    }
    default:
      throw new Error(`unknown expectation ${JSON.stringify(expect)}`);
  }
}

/** new_client ADDRESSES TIMEOUT_MS: makes a client (`$S`: the cluster's addresses) and closes it. */
function newClient(args, servers) {
  if (args.length !== 2) throw new Error('new_client takes ADDRESSES and TIMEOUT_MS');
  const addrs = args[0].replaceAll('$S', servers);
  const ms = integer(args[1]);
  return async () => {
    await new KvClient(addrs, { timeoutMs: ms, group }).close();
    return null;
  };
}

async function runScenario(sc, clients, servers) {
  const prefix = `conf.${lang}.${sc.name}`;
  try {
    for (const dir of ['conf', `conf.${lang}`, prefix]) await clients.a.mkdir(dir);
  } catch (e) {
    return `line ${sc.line}: creating ${prefix} failed: ${e.codeName || ''} ${e.message}`;
  }
  for (const { line, tokens } of sc.steps) {
    try {
      const op = tokens[0];
      if (op === 'sleep') {
        if (tokens.length !== 2) throw new Error('sleep takes one number of milliseconds');
        await new Promise((r) => setTimeout(r, integer(tokens[1])));
        continue;
      }
      const arrow = tokens.indexOf('=>');
      if (arrow < 0) throw new Error('no "=>" in the step');
      const [expect, ...want] = tokens.slice(arrow + 1);
      if (expect === undefined) throw new Error('no expectation after "=>"');
      let start;
      if (op === 'new_client') {
        start = newClient(tokens.slice(1, arrow).map((t) => expand(t, prefix)), servers);
      } else {
        if (arrow < 2) throw new Error('no client in the step');
        const kv = clients[tokens[1]];
        if (kv === undefined) throw new Error(`unknown client ${JSON.stringify(tokens[1])}`);
        const args = tokens.slice(2, arrow).map((t) => expand(t, prefix));
        start = call(kv, op, args, tokens[1]);
      }
      // Validate the expectation's shape before sending anything.
      check(op, expect, want.map((t) => expand(t, prefix)), null, { codeName: '' });
      let r = null;
      let e = null;
      try {
        r = await start();
      } catch (err) {
        e = err;
      }
      const why = check(op, expect, want.map((t) => expand(t, prefix)), r, e);
      if (why !== null) return `line ${line}: ${why}`;
    } catch (err) {
      return `line ${line}: ${err.message}`;
    }
  }
  return null;
}

async function main() {
  const servers = process.env.DT_SERVERS;
  if (!servers) {
    console.error('DT_SERVERS is not set (comma-separated service addresses)');
    return 2;
  }
  let text;
  try {
    text = readFileSync(scenariosPath, 'utf8');
  } catch (e) {
    console.error(`cannot read ${scenariosPath}: ${e.message}`);
    console.log(`${lang}: 0 passed, 1 failed`);
    return 1;
  }
  const { scenarios, problems } = parse(text);
  const clients = {
    a: new KvClient(servers, { timeoutMs: 10_000, group }),
    b: new KvClient(servers, { timeoutMs: 10_000, group }),
    u: new KvClient('127.0.0.1:1', { timeoutMs: 500, group }),
  };
  let passed = 0;
  let failed = problems.length;
  for (const p of problems) console.log(`FAIL ${scenariosPath}: ${p}`);
  try {
    for (const sc of scenarios) {
      const why = await runScenario(sc, clients, servers);
      if (why === null) {
        passed += 1;
        console.log(`PASS ${sc.name}`);
      } else {
        failed += 1;
        console.log(`FAIL ${sc.name}: ${why}`);
      }
    }
  } finally {
    await Promise.allSettled([...watches.values()].map((s) => s.watch.close()));
    await Promise.allSettled(Object.values(clients).map((c) => c.close()));
  }
  console.log(`${lang}: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
