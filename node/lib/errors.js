'use strict';
// The error hierarchy, mapped from the SDK's stable error codes: 1-13 RPC
// status codes (docs/protocol.md), 900-999 errors of the client library
// itself, 1000 + n DtKV error n (docs/kv.md).

const KV = 1000;

/** Base of every error this package raises. */
class DongtingError extends Error {
  constructor(code, message, { codeName, retryable = false, leaderHint = null } = {}) {
    super(message);
    /** The stable numeric code. */
    this.code = code;
    /** The symbolic name of the code (`NOT_FOUND`, `TIMEOUT`...). */
    this.codeName = codeName === undefined ? nameOf(code) : codeName;
    /** True when the request was certainly not executed: resending it is safe. */
    this.retryable = retryable;
    /** `host:port` of the group's leader after a NOT_RAFT_LEADER answer, else null. */
    this.leaderHint = leaderHint;
  }

  get name() {
    return this.constructor.name;
  }
}

let codeNameFn = null;
function nameOf(code) {
  if (codeNameFn === null) codeNameFn = require('./native').codeName;
  return codeNameFn(code);
}

/** DtKV refused the operation; nothing changed (codes 1000 + n). */
class KvError extends DongtingError {}

// DtKV codes that are also argument errors: key, value, TTL and batch size.
const KV_ARGUMENT_CODES = new Set([KV + 7, KV + 8, KV + 11, KV + 12, KV + 22, KV + 101]);

/**
 * The arguments are invalid; nothing was sent (codes 1, 900, and the DtKV
 * key, value, TTL and batch-size errors, whose classes extend KvError but
 * also pass `instanceof InvalidArgumentError`).
 */
class InvalidArgumentError extends DongtingError {
  static [Symbol.hasInstance](x) {
    if (Function.prototype[Symbol.hasInstance].call(this, x)) return true;
    return this === InvalidArgumentError && x instanceof KvError && KV_ARGUMENT_CODES.has(x.code);
  }
}
/** The node does not lead the group (code 7); see `leaderHint`. */
class NotLeaderError extends DongtingError {}
/** No server hosts the raft group (code 8). */
class GroupNotFoundError extends DongtingError {}
/** The server is starting, stopping, overloaded, or the group is stopped (codes 4, 5, 6, 9). */
class UnavailableError extends DongtingError {}
/** No answer within the deadline (code 10); a write may or may not have been applied. */
class TimeoutError extends DongtingError {}
/** Connecting failed or the connection was lost (code 12). */
class NetworkError extends DongtingError {}
/**
 * A write failed after an attempt of it may have reached a server: it may or
 * may not have been applied (code 911, never retryable; the message names the
 * last failure). Read the keys to learn what happened; sending it again is a
 * new write.
 */
class UnknownOutcomeError extends DongtingError {}
/** The client was closed (code 13). */
class ClosedError extends DongtingError {}
/** The call was cancelled (code 901). */
class CancelledError extends DongtingError {}
/** The runtime was shut down before or while the call ran (code 902). */
class RuntimeShutDownError extends DongtingError {}
/** The runtime belongs to another process (code 903). */
class ForkedError extends DongtingError {}
/** A server configuration is invalid (code 905). */
class ConfigError extends DongtingError {}
/** An embedded server could not start (code 906). */
class ServerStartError extends DongtingError {}

/** The key does not exist (remove, updateTtl). */
class NotFoundError extends KvError {}
/** A value operation hit a directory. */
class IsDirError extends KvError {}
/** A directory operation hit a value. */
class NotDirError extends KvError {}
/** The key's parent is not a directory. */
class ParentNotDirError extends KvError {}
/** The key's parent directory does not exist. */
class ParentNotFoundError extends KvError {}
/** Remove of a directory that has children. */
class DirNotEmptyError extends KvError {}
/** The key breaks the key syntax rules, is too long, or is not UTF-8. */
class InvalidKeyError extends KvError {}
/** The value is empty (put) or too large. */
class InvalidValueError extends KvError {}
/** A TTL of zero or above the maximum. */
class InvalidTtlError extends KvError {}
/** A batch with no keys or more keys than the limit. */
class TooManyKeysError extends KvError {}
/** compareAndSet found a different current value. */
class CasMismatchError extends KvError {}
/** The temporary node belongs to another client. */
class NotOwnerError extends KvError {}
/** A TTL operation on a node that is not temporary. */
class NotTempNodeError extends KvError {}
/** A plain write on a temporary node. */
class IsTempNodeError extends KvError {}
/** A lock may not be created under a temporary directory. */
class UnderTempDirError extends KvError {}
/** The key's parent is a lock node, which has no children. */
class ParentIsLockError extends KvError {}
/** A lock operation on a node that is not a lock. */
class NotLockNodeError extends KvError {}
/** A value or directory operation on a lock node. */
class IsLockError extends KvError {}
/** A watch's resume point is older than the server's event history. */
class HistoryCompactedError extends KvError {}
/** The lock already has the maximum number of waiters. */
class TooManyWaitersError extends KvError {}

// An unknown DtKV code maps to KvError, an unknown other code to DongtingError.
const BY_CODE = new Map([
  [1, InvalidArgumentError],
  [4, UnavailableError],
  [5, UnavailableError],
  [6, UnavailableError],
  [7, NotLeaderError],
  [8, GroupNotFoundError],
  [9, UnavailableError],
  [10, TimeoutError],
  [12, NetworkError],
  [13, ClosedError],
  [900, InvalidArgumentError],
  [901, CancelledError],
  [902, RuntimeShutDownError],
  [903, ForkedError],
  [905, ConfigError],
  [906, ServerStartError],
  [911, UnknownOutcomeError],
  [KV + 2, NotFoundError],
  [KV + 4, IsDirError],
  [KV + 5, NotDirError],
  [KV + 6, ParentNotDirError],
  [KV + 7, InvalidKeyError],
  [KV + 8, InvalidValueError],
  [KV + 9, ParentNotFoundError],
  [KV + 10, DirNotEmptyError],
  [KV + 11, InvalidKeyError],
  [KV + 12, InvalidValueError],
  [KV + 14, CasMismatchError],
  [KV + 18, NotOwnerError],
  [KV + 19, NotTempNodeError],
  [KV + 20, IsTempNodeError],
  [KV + 22, InvalidTtlError],
  [KV + 24, UnderTempDirError],
  [KV + 25, ParentIsLockError],
  [KV + 26, NotLockNodeError],
  [KV + 27, IsLockError],
  [KV + 104, HistoryCompactedError],
  [KV + 106, TooManyWaitersError],
  [KV + 101, TooManyKeysError],
]);

/**
 * Every stable error code by its symbolic name (an error's `codeName`): 1-13
 * RPC status codes, 900-999 client library codes, 1000 + n DtKV code n.
 * `errorCodes()` lists the native library's table.
 */
const ErrorCode = Object.freeze({
  CLIENT_ERROR: 1,
  SYS_ERROR: 2,
  COMMAND_NOT_SUPPORTED: 3,
  NOT_INIT: 4,
  STOPPING: 5,
  FLOW_CONTROL: 6,
  NOT_RAFT_LEADER: 7,
  RAFT_GROUP_NOT_FOUND: 8,
  RAFT_GROUP_STOPPED: 9,
  TIMEOUT: 10,
  PROTOCOL_ERROR: 11,
  NETWORK_ERROR: 12,
  CLOSED: 13,
  INVALID_ARGUMENT: 900,
  CANCELLED: 901,
  RUNTIME_SHUT_DOWN: 902,
  FORKED: 903,
  UNSUPPORTED_API_VERSION: 904,
  CONFIG_ERROR: 905,
  SERVER_START_FAILED: 906,
  RESOURCE: 907,
  WRONG_RESULT_KIND: 908,
  PENDING: 909,
  SERVER_STOPPED: 910,
  UNKNOWN_OUTCOME: 911,
  INTERNAL: KV + 1,
  NOT_FOUND: KV + 2,
  IS_DIR: KV + 4,
  NOT_DIR: KV + 5,
  PARENT_NOT_DIR: KV + 6,
  INVALID_KEY: KV + 7,
  INVALID_VALUE: KV + 8,
  PARENT_NOT_FOUND: KV + 9,
  DIR_NOT_EMPTY: KV + 10,
  KEY_TOO_LONG: KV + 11,
  VALUE_TOO_LARGE: KV + 12,
  CAS_MISMATCH: KV + 14,
  NOT_OWNER: KV + 18,
  NOT_TEMP_NODE: KV + 19,
  IS_TEMP_NODE: KV + 20,
  INVALID_TTL: KV + 22,
  UNDER_TEMP_DIR: KV + 24,
  PARENT_IS_LOCK: KV + 25,
  NOT_LOCK_NODE: KV + 26,
  IS_LOCK: KV + 27,
  INVALID_COMMAND: KV + 100,
  TOO_MANY_KEYS: KV + 101,
  SEQ_TOO_OLD: KV + 102,
  INDEX_NOT_INCREASING: KV + 103,
  HISTORY_COMPACTED: KV + 104,
  INVALID_SNAPSHOT: KV + 105,
  TOO_MANY_WAITERS: KV + 106,
});

/** Every error code of the native library as `{ name, code }`, in code order. */
function errorCodes() {
  return require('./native').errorCodes().map(({ name, code }) => ({ name, code }));
}

/** The error instance for a stable code. */
function errorFromCode(code, message, { codeName, retryable = false, leaderHint = null } = {}) {
  let cls = BY_CODE.get(code);
  if (cls === undefined) cls = code > KV ? KvError : DongtingError;
  return new cls(code, message, { codeName, retryable, leaderHint: leaderHint ?? null });
}

/** The error for the native module's error description. */
function fromInfo(info) {
  return errorFromCode(info.code, info.message, info);
}

const SYNC = /^dongting:(-?\d+):([\s\S]*)$/;

/** Turns an error thrown synchronously by the native module into a DongtingError. */
function fromThrown(e) {
  const m = e && typeof e.message === 'string' ? SYNC.exec(e.message) : null;
  if (m === null) return e;
  return errorFromCode(Number(m[1]), m[2]);
}

module.exports = {
  DongtingError,
  InvalidArgumentError,
  NotLeaderError,
  GroupNotFoundError,
  UnavailableError,
  TimeoutError,
  NetworkError,
  UnknownOutcomeError,
  ClosedError,
  CancelledError,
  RuntimeShutDownError,
  ForkedError,
  ConfigError,
  ServerStartError,
  KvError,
  NotFoundError,
  IsDirError,
  NotDirError,
  ParentNotDirError,
  ParentNotFoundError,
  DirNotEmptyError,
  InvalidKeyError,
  InvalidValueError,
  InvalidTtlError,
  TooManyKeysError,
  CasMismatchError,
  NotOwnerError,
  NotTempNodeError,
  IsTempNodeError,
  UnderTempDirError,
  ParentIsLockError,
  NotLockNodeError,
  IsLockError,
  HistoryCompactedError,
  TooManyWaitersError,
  ErrorCode,
  errorCodes,
  errorFromCode,
  fromInfo,
  fromThrown,
};
