// Types of the dongting package (the native module's own types, generated
// by the napi-rs CLI, are in native.d.ts after a build; this file is the
// public API).

/// <reference types="node" />

/** A key: a string, or bytes holding UTF-8. */
export type Key = string | Uint8Array;
/** A value: a string (stored as UTF-8) or bytes. */
export type Value = string | Uint8Array | ArrayBuffer | ArrayBufferView;
/** Entries of a batch put. */
export type Entries = Map<Key, Value> | Record<string, Value> | Iterable<readonly [Key, Value]>;

/** Options every call accepts. */
export interface CallOptions {
  /** The raft group, an integer 0 to 4294967295 (default: the client's `group`). */
  group?: number;
}

/** What a node is (stable numbers shared with the C API). */
export declare const NodeKind: {
  readonly ABSENT: 0;
  readonly VALUE: 1;
  readonly DIR: 2;
  readonly LOCK: 3;
};
export type NodeKind = (typeof NodeKind)[keyof typeof NodeKind];

/** One DtKV node as read. */
export declare class KvNode {
  private constructor();
  /** The full key (`a.b.c`). */
  readonly key: string;
  /** The value (empty for directories). */
  readonly value: Buffer;
  readonly kind: NodeKind;
  /** Raft index of the creation. */
  readonly createIndex: number;
  /** Leader wall-clock milliseconds of the creation. */
  readonly createTimeMs: number;
  /** Raft index of the last change. */
  readonly updateIndex: number;
  /** Leader wall-clock milliseconds of the last change. */
  readonly updateTimeMs: number;
  /** Temporary node: expiry deadline (leader wall-clock ms); 0 otherwise. */
  readonly ttlDeadlineMs: number;
  /** Temporary node: id of the owning client; 0n otherwise. */
  readonly ttlOwner: bigint;
  /** The value decoded as UTF-8. */
  readonly text: string;
  /** The last segment of the key. */
  readonly name: string;
  readonly isDir: boolean;
  readonly isValue: boolean;
}

/** The answer to a write. */
export interface WriteResult {
  /** Raft index the write was applied at. */
  index: number;
  /** put, mkdir: whether the node was created (false: it existed). */
  created: boolean;
  /** putTemp, makeTempDir, updateTtl: the new expiry deadline (leader wall-clock ms). */
  deadlineMs: number;
  /** batchPut, batchRemove: one code per key (0: done). */
  codes: number[];
}

export interface ListPageOptions extends CallOptions {
  /** The page holds the children whose key sorts after this full key (default `""`: from the first child). */
  startAfter?: Key;
  /** Most children of the page: an integer 0 to 10000 (default 0: the server's default, 1000). */
  limit?: number | bigint;
}

/** One page of a directory's children. */
export interface ListPage {
  /** Children in key order. */
  nodes: KvNode[];
  /** Children follow the last node (pass its `key` as the next `startAfter`). */
  more: boolean;
}

export interface KvClientOptions {
  /** Longest time of one call, retries included, in ms: an integer 1 to 86400000 (default 5000). */
  timeoutMs?: number | bigint;
  /** The raft group calls use unless they pass one: an integer 0 to 4294967295 (default 0). */
  group?: number;
}

/**
 * A DtKV client; every method returns a Promise. Numbers are checked before
 * anything is sent: out of range, or not a number, is InvalidArgumentError
 * naming the argument and the value given (a TTL of 0 or above 2592000000 ms
 * is InvalidTtlError, as DtKV answers for it). TTLs, leases and lock waits
 * reach 2592000000 ms (30 days); a list page's `limit` is 0 to 10000; a
 * server address with port 0 is refused.
 */
export declare class KvClient implements AsyncDisposable {
  constructor(servers: string | readonly string[], options?: KvClientOptions);
  /** The raft group calls use unless they name one. */
  group: number;
  /** The write session id (owner of this client's temporary nodes). */
  readonly clientId: bigint;
  put(key: Key, value: Value, options?: CallOptions): Promise<WriteResult>;
  get(key: Key, options?: CallOptions): Promise<KvNode | null>;
  getText(key: Key, options?: CallOptions): Promise<string | null>;
  remove(key: Key, options?: CallOptions): Promise<WriteResult>;
  mkdir(key: Key, options?: CallOptions): Promise<WriteResult>;
  /** Every child of `dir`, in key order, read page by page (not one snapshot). */
  list(dir?: Key, options?: CallOptions): Promise<KvNode[]>;
  /** One page of `dir`'s children: those after `startAfter`, at most `limit`. */
  listPage(dir?: Key, options?: ListPageOptions): Promise<ListPage>;
  /** Every child of `dir`, in key order, reading `limit` at a time: `for await (const node of kv.iterList(dir))`. */
  iterList(dir?: Key, options?: ListPageOptions): AsyncGenerator<KvNode, void, undefined>;
  batchPut(entries: Entries, options?: CallOptions): Promise<WriteResult>;
  batchGet(keys: readonly Key[], options?: CallOptions): Promise<(KvNode | null)[]>;
  batchRemove(keys: readonly Key[], options?: CallOptions): Promise<WriteResult>;
  compareAndSet(key: Key, expected: Value, newValue: Value, options?: CallOptions): Promise<WriteResult>;
  putTemp(key: Key, value: Value, ttlMs: number, options?: CallOptions): Promise<WriteResult>;
  makeTempDir(key: Key, ttlMs: number, options?: CallOptions): Promise<WriteResult>;
  updateTtl(key: Key, ttlMs: number, options?: CallOptions): Promise<WriteResult>;
  /** Watches keys (each covers its subtree); resolves once a server accepted the watch. */
  watch(keys: Key | readonly Key[], options?: WatchOptions): Promise<Watch>;
  /** A handle on the distributed lock at `key` (nothing is sent yet). */
  createLock(key: Key, options?: CallOptions): Lock;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface WatchOptions extends CallOptions {
  /** Report writes with a raft index above this (default 0: from the serving node's applied index). */
  fromIndex?: number | bigint;
}

/** A change of a watched key. */
export interface WatchChange {
  readonly compacted?: undefined;
  /** Raft index of the write. */
  readonly index: number;
  readonly key: Buffer;
  /** The key's state after the write (ABSENT: removed). */
  readonly kind: NodeKind;
  /** The value after the write (empty unless `kind` is VALUE). */
  readonly value: Buffer;
}

/** The server's history no longer holds events the watch had not seen: re-read the watched keys. */
export interface WatchCompacted {
  readonly compacted: true;
  /** Events continue with indexes above this. */
  readonly index: number;
  /** Where the server's history starts. */
  readonly historyFloor: number;
}

export type WatchEvent = WatchChange | WatchCompacted;

/** A watch stream: `for await (const ev of watch)`; ends after close() or the client's close(). */
export declare class Watch implements AsyncIterableIterator<WatchEvent>, AsyncDisposable {
  private constructor();
  /** The highest raft index the watch is complete up to (resume a new watch from it). */
  readonly lastIndex: number;
  /** True once closed (by close() or the client's close()). */
  readonly closed: boolean;
  next(): Promise<IteratorResult<WatchEvent, undefined>>;
  return(): Promise<IteratorResult<WatchEvent, undefined>>;
  [Symbol.asyncIterator](): this;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A distributed lock with fencing tokens, used through its client's session. */
export declare class Lock implements AsyncDisposable {
  private constructor();
  /** The lock's key. */
  readonly key: string;
  /** Acquires with a lease; resolves with the fencing token, or null when the wait ended without the lock. */
  tryLock(leaseMs: number, waitTimeoutMs?: number): Promise<bigint | null>;
  /** Releases the lock or leaves its wait queue. */
  unlock(): Promise<void>;
  /** Extends the lease to `leaseMs` from now (NotOwnerError when not held). */
  updateLease(leaseMs: number): Promise<void>;
  /** True while this client holds the lock by its own count (sends nothing). */
  isHeld(): boolean;
  /** Milliseconds left of the lease by this client's count; 0 when not held. */
  leaseRestMillis(): number;
  /** The fencing token of the current hold, null when not held. */
  readonly token: bigint | null;
  /** Releases the lock if held; the handle stays usable. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface GroupStatus {
  groupId: number;
  /** `leader`, `follower`, `candidate`, `observer`, `stopped` or `unknown`. */
  role: string;
  term: number;
  leaderId: number;
  commitIndex: number;
  appliedIndex: number;
  /** A leader is known and its term's first entry is applied here. */
  ready: boolean;
}

export interface ServerStatus {
  nodeId: number;
  /** Every peer passed the configuration check. */
  ready: boolean;
  groups: GroupStatus[];
}

/** A Dongting node running in this process; keeps Node alive until stopped (or unref'd). */
export declare class EmbeddedServer implements AsyncDisposable {
  private constructor();
  static start(toml: string): Promise<EmbeddedServer>;
  static startFile(path: string): Promise<EmbeddedServer>;
  readonly nodeId: number;
  readonly serviceAddr: string;
  readonly replicateAddr: string;
  readonly stopped: boolean;
  status(): ServerStatus;
  /** The node's metrics in the Prometheus text format (what `GET /metrics` serves). */
  metrics(): string;
  role(group?: number): string | null;
  isLeader(group?: number): boolean;
  ref(): this;
  unref(): this;
  stop(options?: { graceMs?: number }): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface LocalClusterOptions {
  /** Groups every node hosts (default [0]). */
  groups?: number[];
  /** Data directory (default: a temporary directory removed by stop()). */
  dataDir?: string;
  /** How long to wait for leaders, in ms (default 30000). */
  timeoutMs?: number;
}

/** Nodes on loopback in this process: for tests and development. */
export declare class LocalCluster implements AsyncDisposable {
  private constructor();
  readonly servers: EmbeddedServer[];
  readonly groups: number[];
  readonly dataDir: string;
  /** Service addresses of the running nodes, comma-separated. */
  readonly addresses: string;
  leader(group?: number): EmbeddedServer | null;
  waitReady(timeoutMs?: number): Promise<void>;
  client(options?: KvClientOptions): KvClient;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export declare function startLocalCluster(nodes?: number, options?: LocalClusterOptions): Promise<LocalCluster>;

/** The symbolic name of an error code (`"NOT_FOUND"`, `"UNKNOWN"`...). */
export declare function codeName(code: number): string;
/** The version of the native library. */
export declare const version: string;

export interface ErrorDetails {
  codeName?: string;
  retryable?: boolean;
  leaderHint?: string | null;
}

/** Base of every error this package raises. */
export declare class DongtingError extends Error {
  constructor(code: number, message: string, details?: ErrorDetails);
  /** The stable numeric code: 1-13 RPC status, 900-999 library, 1000 + n DtKV. */
  readonly code: number;
  /** The symbolic name of the code. */
  readonly codeName: string;
  /** True when the request was certainly not executed: resending it is safe. */
  readonly retryable: boolean;
  /** `host:port` of the leader after NOT_RAFT_LEADER, else null. */
  readonly leaderHint: string | null;
}
export declare class InvalidArgumentError extends DongtingError {}
export declare class NotLeaderError extends DongtingError {}
export declare class GroupNotFoundError extends DongtingError {}
export declare class UnavailableError extends DongtingError {}
export declare class TimeoutError extends DongtingError {}
export declare class NetworkError extends DongtingError {}
/** A write that may or may not have been applied (code 911); never retryable. */
export declare class UnknownOutcomeError extends DongtingError {}
export declare class ClosedError extends DongtingError {}
export declare class CancelledError extends DongtingError {}
export declare class RuntimeShutDownError extends DongtingError {}
export declare class ForkedError extends DongtingError {}
export declare class ConfigError extends DongtingError {}
export declare class ServerStartError extends DongtingError {}
export declare class KvError extends DongtingError {}
export declare class NotFoundError extends KvError {}
export declare class IsDirError extends KvError {}
export declare class NotDirError extends KvError {}
export declare class ParentNotDirError extends KvError {}
export declare class ParentNotFoundError extends KvError {}
export declare class DirNotEmptyError extends KvError {}
/** Also `instanceof InvalidArgumentError`. */
export declare class InvalidKeyError extends KvError {}
/** Also `instanceof InvalidArgumentError`. */
export declare class InvalidValueError extends KvError {}
/** Also `instanceof InvalidArgumentError`. */
export declare class InvalidTtlError extends KvError {}
/** Also `instanceof InvalidArgumentError`. */
export declare class TooManyKeysError extends KvError {}
export declare class CasMismatchError extends KvError {}
export declare class NotOwnerError extends KvError {}
export declare class NotTempNodeError extends KvError {}
export declare class IsTempNodeError extends KvError {}
export declare class UnderTempDirError extends KvError {}
export declare class ParentIsLockError extends KvError {}
export declare class NotLockNodeError extends KvError {}
export declare class IsLockError extends KvError {}
export declare class HistoryCompactedError extends KvError {}
export declare class TooManyWaitersError extends KvError {}

/** Every stable error code by its symbolic name (an error's `codeName`). */
export declare const ErrorCode: Readonly<{
  readonly CLIENT_ERROR: number;
  readonly SYS_ERROR: number;
  readonly COMMAND_NOT_SUPPORTED: number;
  readonly NOT_INIT: number;
  readonly STOPPING: number;
  readonly FLOW_CONTROL: number;
  readonly NOT_RAFT_LEADER: number;
  readonly RAFT_GROUP_NOT_FOUND: number;
  readonly RAFT_GROUP_STOPPED: number;
  readonly TIMEOUT: number;
  readonly PROTOCOL_ERROR: number;
  readonly NETWORK_ERROR: number;
  readonly CLOSED: number;
  readonly INVALID_ARGUMENT: number;
  readonly CANCELLED: number;
  readonly RUNTIME_SHUT_DOWN: number;
  readonly FORKED: number;
  readonly UNSUPPORTED_API_VERSION: number;
  readonly CONFIG_ERROR: number;
  readonly SERVER_START_FAILED: number;
  readonly RESOURCE: number;
  readonly WRONG_RESULT_KIND: number;
  readonly PENDING: number;
  readonly SERVER_STOPPED: number;
  readonly UNKNOWN_OUTCOME: number;
  readonly INTERNAL: number;
  readonly NOT_FOUND: number;
  readonly IS_DIR: number;
  readonly NOT_DIR: number;
  readonly PARENT_NOT_DIR: number;
  readonly INVALID_KEY: number;
  readonly INVALID_VALUE: number;
  readonly PARENT_NOT_FOUND: number;
  readonly DIR_NOT_EMPTY: number;
  readonly KEY_TOO_LONG: number;
  readonly VALUE_TOO_LARGE: number;
  readonly CAS_MISMATCH: number;
  readonly NOT_OWNER: number;
  readonly NOT_TEMP_NODE: number;
  readonly IS_TEMP_NODE: number;
  readonly INVALID_TTL: number;
  readonly UNDER_TEMP_DIR: number;
  readonly PARENT_IS_LOCK: number;
  readonly NOT_LOCK_NODE: number;
  readonly IS_LOCK: number;
  readonly INVALID_COMMAND: number;
  readonly TOO_MANY_KEYS: number;
  readonly SEQ_TOO_OLD: number;
  readonly INDEX_NOT_INCREASING: number;
  readonly HISTORY_COMPACTED: number;
  readonly INVALID_SNAPSHOT: number;
  readonly TOO_MANY_WAITERS: number;
}>;
/** One row of the native library's error-code table. */
export interface ErrorCodeEntry {
  readonly name: string;
  readonly code: number;
}
/** Every error code of the native library, in code order. */
export declare function errorCodes(): ErrorCodeEntry[];

/** The error instance for a stable code. */
export declare function errorFromCode(code: number, message: string, details?: ErrorDetails): DongtingError;
