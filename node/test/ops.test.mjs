// Every operation of the SDK's table (kv_ops!) has its method on KvClient.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { KvClient } from 'dongting';

const native = createRequire(import.meta.url)('../lib/native.js');

const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

test('the table lists the operations once each', () => {
  const names = native.kvOpNames();
  assert.ok(names.includes('put') && names.includes('list_page'));
  assert.equal(new Set(names).size, names.length);
});

test('every operation of the table has its KvClient method', () => {
  for (const name of native.kvOpNames()) {
    const m = camel(name);
    assert.equal(typeof KvClient.prototype[m], 'function', `KvClient has no method ${m}`);
    assert.equal(typeof native.NativeClient.prototype[m], 'function', `NativeClient has no method ${m}`);
  }
});
