// Error mapping: every failure is a DongtingError subclass with a stable code.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as dt from 'dongting';
import {
  startLocalCluster,
  KvClient,
  DongtingError,
  KvError,
  InvalidArgumentError,
  InvalidKeyError,
  InvalidValueError,
  InvalidTtlError,
  ParentNotFoundError,
  ParentNotDirError,
  CasMismatchError,
  NotOwnerError,
  NotTempNodeError,
  NotFoundError,
  DirNotEmptyError,
  IsDirError,
  NotDirError,
  TimeoutError,
  NetworkError,
  UnknownOutcomeError,
  ConfigError,
  errorFromCode,
  codeName,
} from 'dongting';

let cluster;
let kv;
let other;

before(async () => {
  cluster = await startLocalCluster(3);
  kv = cluster.client();
  other = cluster.client();
  await kv.mkdir('e');
});

after(async () => {
  await kv?.close();
  await other?.close();
  await cluster?.stop();
});

function is(cls, code, name) {
  return (e) => {
    assert.ok(e instanceof cls, `${e && e.name} is not a ${cls.name}: ${e && e.message}`);
    assert.ok(e instanceof DongtingError);
    assert.ok(e instanceof Error);
    assert.equal(e.code, code);
    assert.equal(e.codeName, name);
    assert.equal(e.name, e.constructor.name);
    assert.equal(typeof e.retryable, 'boolean');
    return true;
  };
}

test('invalid keys', async () => {
  await assert.rejects(kv.put('e..k', 'v'), is(InvalidKeyError, 1007, 'INVALID_KEY'));
  await assert.rejects(kv.get('.e'), is(InvalidKeyError, 1007, 'INVALID_KEY'));
  await assert.rejects(kv.put('e.k.', 'v'), (e) => e instanceof InvalidArgumentError && e instanceof KvError);
  await assert.rejects(kv.put(`e.${'x'.repeat(9000)}`, 'v'), is(InvalidKeyError, 1011, 'KEY_TOO_LONG'));
  await assert.rejects(kv.get(Buffer.from([0x65, 0x2e, 0xff])), is(InvalidKeyError, 1007, 'INVALID_KEY'));
});

test('invalid and oversized values', async () => {
  await assert.rejects(kv.put('e.v', ''), is(InvalidValueError, 1008, 'INVALID_VALUE'));
  await assert.rejects(kv.put('e.v', Buffer.alloc(1024 * 1024 + 1, 1)), is(InvalidValueError, 1012, 'VALUE_TOO_LARGE'));
  assert.equal(await kv.get('e.v'), null);
  await kv.put('e.v', Buffer.alloc(1024 * 1024, 1));
  assert.equal((await kv.get('e.v')).value.length, 1024 * 1024);
});

test('wrong argument types reject with InvalidArgumentError and send nothing', async () => {
  await assert.rejects(kv.put(42, 'v'), is(InvalidArgumentError, 900, 'INVALID_ARGUMENT'));
  await assert.rejects(kv.put('e.k', { a: 1 }), /a value|value must be/);
  await assert.rejects(kv.batchGet('e.k'), is(InvalidArgumentError, 900, 'INVALID_ARGUMENT'));
  await assert.rejects(kv.putTemp('e.k', 'v', -1), is(InvalidArgumentError, 900, 'INVALID_ARGUMENT'));
  await assert.rejects(kv.put('e.k', 'v', { group: -1 }), is(InvalidArgumentError, 900, 'INVALID_ARGUMENT'));
  assert.equal(await kv.get('e.k'), null);
});

test('tree errors', async () => {
  await assert.rejects(kv.put('e.nodir.k', 'v'), is(ParentNotFoundError, 1009, 'PARENT_NOT_FOUND'));
  await assert.rejects(kv.mkdir('e.nodir.sub'), is(ParentNotFoundError, 1009, 'PARENT_NOT_FOUND'));
  await kv.mkdir('e.d');
  await kv.put('e.d.a', '1');
  await assert.rejects(kv.remove('e.d'), is(DirNotEmptyError, 1010, 'DIR_NOT_EMPTY'));
  await assert.rejects(kv.put('e.d', 'x'), is(IsDirError, 1004, 'IS_DIR'));
  await assert.rejects(kv.list('e.d.a'), is(NotDirError, 1005, 'NOT_DIR'));
  await assert.rejects(kv.put('e.d.a.x', 'v'), is(ParentNotDirError, 1006, 'PARENT_NOT_DIR'));
  await assert.rejects(kv.remove('e.none'), is(NotFoundError, 1002, 'NOT_FOUND'));
});

test('CAS mismatch', async () => {
  await kv.put('e.cas', 'v1');
  await assert.rejects(kv.compareAndSet('e.cas', 'wrong', 'v2'), is(CasMismatchError, 1014, 'CAS_MISMATCH'));
  await assert.rejects(kv.compareAndSet('e.cas', '', 'v2'), CasMismatchError);
  assert.equal(await kv.getText('e.cas'), 'v1');
});

test('temporary node ownership and TTLs', async () => {
  await kv.putTemp('e.t', 'v', 60_000);
  await assert.rejects(other.updateTtl('e.t', 60_000), is(NotOwnerError, 1018, 'NOT_OWNER'));
  await assert.rejects(other.put('e.t', 'w'), (e) => e.codeName === 'NOT_OWNER' || e.codeName === 'IS_TEMP_NODE');
  await kv.put('e.plain', 'v');
  await assert.rejects(kv.updateTtl('e.plain', 1000), is(NotTempNodeError, 1019, 'NOT_TEMP_NODE'));
  await assert.rejects(kv.updateTtl('e.none', 1000), NotFoundError);
  await assert.rejects(kv.putTemp('e.t2', 'v', 0), is(InvalidTtlError, 1022, 'INVALID_TTL'));
  await assert.rejects(kv.makeTempDir('e.t3', 0), InvalidTtlError);
});

test('batch errors', async () => {
  // A bad key refuses the whole batch: nothing is written.
  await assert.rejects(kv.batchPut([['e.ok', '1'], ['e..bad', '2']]), is(InvalidKeyError, 1007, 'INVALID_KEY'));
  assert.equal(await kv.get('e.ok'), null);
  await assert.rejects(kv.batchRemove(['e.ok', 'e..bad']), InvalidKeyError);
  await assert.rejects(kv.batchGet([]), is(dt.TooManyKeysError, 1101, 'TOO_MANY_KEYS'));
});

test('unreachable server', async () => {
  const u = new KvClient('127.0.0.1:1', { timeoutMs: 500 });
  try {
    const t0 = Date.now();
    await assert.rejects(u.put('e.k', 'v'), (e) => {
      assert.ok(e instanceof TimeoutError || e instanceof NetworkError, `${e.name}: ${e.message}`);
      assert.ok(['TIMEOUT', 'NETWORK_ERROR'].includes(e.codeName));
      return true;
    });
    assert.ok(Date.now() - t0 < 5000);
    await assert.rejects(u.get('e.k'), (e) => e instanceof TimeoutError || e instanceof NetworkError);
  } finally {
    await u.close();
  }
});

test('bad client arguments throw at once', () => {
  assert.throws(() => new KvClient('not an address'), is(InvalidArgumentError, 900, 'INVALID_ARGUMENT'));
  assert.throws(() => new KvClient(''), InvalidArgumentError);
  assert.throws(() => new KvClient(5), InvalidArgumentError);
  assert.throws(() => new KvClient('127.0.0.1:1', { timeoutMs: -5 }), InvalidArgumentError);
});

test('bad server configuration rejects with ConfigError', async () => {
  await assert.rejects(dt.EmbeddedServer.start('node_id = "x"'), is(ConfigError, 905, 'CONFIG_ERROR'));
  await assert.rejects(dt.startLocalCluster(0), InvalidArgumentError);
});

test('code table', () => {
  assert.equal(codeName(1014), 'CAS_MISMATCH');
  assert.equal(codeName(7), 'NOT_RAFT_LEADER');
  assert.equal(codeName(-1), 'UNKNOWN');
  const e = errorFromCode(7, 'not leader', { retryable: true, leaderHint: '127.0.0.1:5' });
  assert.ok(e instanceof dt.NotLeaderError);
  assert.equal(e.leaderHint, '127.0.0.1:5');
  assert.equal(e.retryable, true);
  assert.ok(errorFromCode(1999, 'future') instanceof KvError);
  assert.equal(errorFromCode(4, 'x').name, 'UnavailableError');
  const unknown = errorFromCode(911, 'UNKNOWN_OUTCOME: the write may or may not have been applied');
  assert.ok(unknown instanceof UnknownOutcomeError);
  assert.equal(unknown.codeName, 'UNKNOWN_OUTCOME');
  assert.equal(unknown.retryable, false);
  assert.ok(!(errorFromCode(1014, 'x') instanceof InvalidArgumentError));
});

test('lock and watch error codes map to their classes', async () => {
  const cases = [
    [1024, 'UnderTempDirError', 'UNDER_TEMP_DIR'],
    [1025, 'ParentIsLockError', 'PARENT_IS_LOCK'],
    [1026, 'NotLockNodeError', 'NOT_LOCK_NODE'],
    [1027, 'IsLockError', 'IS_LOCK'],
    [1104, 'HistoryCompactedError', 'HISTORY_COMPACTED'],
    [1106, 'TooManyWaitersError', 'TOO_MANY_WAITERS'],
  ];
  for (const [code, cls, name] of cases) {
    const e = errorFromCode(code, 'x');
    assert.ok(e instanceof dt[cls], `${code} is ${e.name}`);
    assert.ok(e instanceof KvError);
    assert.ok(!(e instanceof InvalidArgumentError));
    assert.equal(e.codeName, name);
  }
  // From the server: a value write on a lock node, a lock under a lock.
  await kv.mkdir('e.locks');
  const lock = kv.createLock('e.locks.l');
  assert.ok(await lock.tryLock(10_000));
  await assert.rejects(kv.put('e.locks.l', 'v'), is(dt.IsLockError, 1027, 'IS_LOCK'));
  await assert.rejects(kv.put('e.locks.l.child', 'v'), is(dt.ParentIsLockError, 1025, 'PARENT_IS_LOCK'));
  await lock.close();
});
