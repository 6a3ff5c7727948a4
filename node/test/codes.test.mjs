// The error-code table: every code of the native library has a named constant
// and an error class (or is one of the few codes left to the base classes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DongtingError, ErrorCode, KvError, codeName, errorCodes, errorFromCode } from 'dongting';

// Codes that deliberately raise a base class (DongtingError, or KvError for
// DtKV codes): conditions a caller does not handle one by one.
const BASE_CLASS_CODES = new Set([
  'SYS_ERROR',
  'COMMAND_NOT_SUPPORTED',
  'PROTOCOL_ERROR',
  'UNSUPPORTED_API_VERSION',
  'RESOURCE',
  'WRONG_RESULT_KIND',
  'PENDING',
  'SERVER_STOPPED',
  'INTERNAL',
  'INVALID_COMMAND',
  'SEQ_TOO_OLD',
  'INDEX_NOT_INCREASING',
  'INVALID_SNAPSHOT',
]);

test('every code has a constant in ErrorCode and no constant lacks a code', () => {
  const table = errorCodes();
  assert.ok(table.length > 0);
  assert.equal(new Set(table.map((c) => c.code)).size, table.length);
  assert.equal(new Set(table.map((c) => c.name)).size, table.length);
  for (const { name, code } of table) {
    assert.equal(ErrorCode[name], code, `ErrorCode.${name}`);
    assert.equal(codeName(code), name);
  }
  assert.deepEqual(
    Object.entries(ErrorCode).sort((a, b) => a[1] - b[1]),
    table.map((c) => [c.name, c.code]),
  );
  assert.ok(Object.isFrozen(ErrorCode));
});

test('every code maps to its own error class unless listed as a base-class code', () => {
  const names = new Set(errorCodes().map((c) => c.name));
  for (const name of BASE_CLASS_CODES) assert.ok(names.has(name), `${name} is not a code`);
  for (const { name, code } of errorCodes()) {
    const e = errorFromCode(code, 'm');
    const base = code > 1000 ? KvError : DongtingError;
    assert.equal(e.code, code);
    assert.equal(e.codeName, name);
    if (BASE_CLASS_CODES.has(name)) {
      assert.equal(e.constructor, base, `${name} (${code}) maps to ${e.constructor.name}`);
    } else {
      assert.notEqual(e.constructor, base, `${name} (${code}) has no error class`);
      assert.ok(e instanceof base);
    }
  }
});
