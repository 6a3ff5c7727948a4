// Both entry points expose the same objects.
const { test } = require('node:test');
const assert = require('node:assert/strict');

test('require and import give the same API', async () => {
  const cjs = require('dongting');
  const esm = await import('dongting');
  for (const name of ['KvClient', 'EmbeddedServer', 'startLocalCluster', 'DongtingError', 'NotLeaderError', 'CasMismatchError', 'NodeKind']) {
    assert.equal(typeof cjs[name] === 'undefined', false, name);
    assert.equal(esm[name], cjs[name], name);
  }
  assert.match(cjs.version, /^\d+\.\d+\.\d+$/);
  for (const k of Object.keys(cjs)) assert.ok(k in esm, `${k} is missing from the ES module entry`);
});
