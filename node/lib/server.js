'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const native = require('./native');
const { submit } = require('./completions');
const { InvalidArgumentError, TimeoutError, fromThrown } = require('./errors');
const { KvClient } = require('./client');
const t = require('./types');

const NOOP = () => {};
// Longest interval a timer accepts; the timer only holds the loop open.
const KEEP_ALIVE_MS = 2 ** 31 - 1;

/**
 * A Dongting node running inside this process.
 *
 * Start it with `EmbeddedServer.start(toml)` or `EmbeddedServer.startFile(path)`
 * (see docs/server.md for the settings); the promise resolves once every
 * group is open and the ports listen. Like a `net.Server`, a running server
 * keeps Node alive until `stop()` (or `unref()`).
 */
class EmbeddedServer {
  #n;
  #keepAlive;
  #stopping = null;

  constructor(token, n) {
    if (token !== START) throw new TypeError('use EmbeddedServer.start(toml) or EmbeddedServer.startFile(path)');
    this.#n = n;
    this.#keepAlive = setInterval(NOOP, KEEP_ALIVE_MS);
  }

  /** Starts a node from TOML configuration text. */
  static start(toml) {
    if (typeof toml !== 'string') return Promise.reject(new InvalidArgumentError(900, 'the configuration must be TOML text'));
    return EmbeddedServer.#start((q, id) => native.PendingServer.start(q, id, toml));
  }

  /** Starts a node from a TOML file (a relative data_dir is taken relative to it). */
  static startFile(file) {
    if (typeof file !== 'string') return Promise.reject(new InvalidArgumentError(900, 'the path must be a string'));
    return EmbeddedServer.#start((q, id) => native.PendingServer.startFile(q, id, file));
  }

  static async #start(begin) {
    let pending;
    await submit(t.asVoid, (q, id) => {
      pending = begin(q, id);
    });
    try {
      return new EmbeddedServer(START, pending.take());
    } catch (e) {
      throw fromThrown(e);
    }
  }

  get nodeId() {
    return this.#n.nodeId;
  }

  /** `ip:port` clients connect to (empty once stopped). */
  get serviceAddr() {
    return this.#n.serviceAddr;
  }

  /** `ip:port` of the replicate port (peers, admin tools). */
  get replicateAddr() {
    return this.#n.replicateAddr;
  }

  get stopped() {
    return this.#n.stopped;
  }

  /**
   * `{ nodeId, ready, groups: [{ groupId, role, term, leaderId, commitIndex,
   * appliedIndex, ready }] }`. Cheap: copies in-memory status.
   */
  status() {
    try {
      return this.#n.status();
    } catch (e) {
      throw fromThrown(e);
    }
  }

  /**
   * The node's metrics in the Prometheus text format, the same text its HTTP
   * port's `GET /metrics` serves (docs/monitoring.md), for an application to
   * expose on its own endpoint. Cheap.
   */
  metrics() {
    try {
      return this.#n.metrics();
    } catch (e) {
      throw fromThrown(e);
    }
  }

  /** This node's role in `group` (`"leader"`, `"follower"`...), null when it does not host it. */
  role(group = 0) {
    const g = this.status().groups.find((x) => x.groupId === group);
    return g ? g.role : null;
  }

  /** Whether this node leads `group` and has applied its term's first entry. */
  isLeader(group = 0) {
    const g = this.status().groups.find((x) => x.groupId === group);
    return g !== undefined && g.role === 'leader' && g.ready;
  }

  /** Lets Node exit while this server runs (like `net.Server#unref`). */
  unref() {
    this.#keepAlive.unref();
    return this;
  }

  /** Undoes `unref()`. */
  ref() {
    if (!this.stopped) this.#keepAlive.ref();
    return this;
  }

  /**
   * Stops gracefully: writes already accepted finish within `graceMs` (0 to
   * 86400000), logs are synced and closed. Idempotent.
   */
  stop(options = {}) {
    if (this.#stopping === null) {
      const { graceMs = 1000 } = options;
      let grace;
      try {
        grace = Math.ceil(t.wait(graceMs, 'graceMs', t.MAX_TIMEOUT_MS));
      } catch (e) {
        return Promise.reject(e);
      }
      this.#stopping = submit(t.asVoid, (q, id) => this.#n.stop(q, id, grace)).finally(
        () => clearInterval(this.#keepAlive),
      );
    }
    return this.#stopping;
  }

  [Symbol.asyncDispose]() {
    return this.stop();
  }
}

const START = Symbol('start');

/**
 * Nodes on loopback in this process, each hosting every group, with fast
 * elections: for tests and development, not production. Data lives in
 * `dataDir` (default: a temporary directory that `stop()` removes).
 */
class LocalCluster {
  constructor(token, servers, groups, dataDir, temp) {
    if (token !== START) throw new TypeError('use startLocalCluster()');
    /** The running nodes. */
    this.servers = servers;
    /** The groups every node hosts. */
    this.groups = groups;
    /** Where the nodes keep their data. */
    this.dataDir = dataDir;
    this._temp = temp;
  }

  /** Service addresses of the running nodes, comma-separated. */
  get addresses() {
    return this.servers
      .filter((s) => !s.stopped)
      .map((s) => s.serviceAddr)
      .join(',');
  }

  /** The node leading `group`, if one does now. */
  leader(group = this.groups[0]) {
    return this.servers.find((s) => !s.stopped && s.isLeader(group)) || null;
  }

  /** Waits until every group has a leader; rejects with TimeoutError. */
  async waitReady(timeoutMs = 30000) {
    const deadline = Date.now() + t.wait(timeoutMs, 'timeoutMs', t.MAX_TIMEOUT_MS);
    for (;;) {
      if (this.groups.every((g) => this.leader(g) !== null)) return;
      if (Date.now() > deadline) throw new TimeoutError(10, `no leader for every group within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** A client of this cluster (`group` defaults to the first group). */
  client(options = {}) {
    return new KvClient(this.addresses, { group: this.groups[0], ...options });
  }

  /** Stops every node and removes a temporary data directory. */
  async stop() {
    await Promise.allSettled(this.servers.map((s) => s.stop()));
    if (this._temp) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose]() {
    return this.stop();
  }
}

/**
 * Starts `nodes` nodes (default 3) on loopback in this process and waits
 * until every group has a leader. Options: `groups` (default [0]),
 * `dataDir` (default: a temporary directory), `timeoutMs` (default 30000).
 */
async function startLocalCluster(nodes = 3, options = {}) {
  const { groups = [0], dataDir, timeoutMs = 30000 } = options;
  t.integer(nodes, 'nodes', 0, 0xffffffff);
  if (!Array.isArray(groups)) throw new InvalidArgumentError(900, `groups must be an array, not ${t.typeName(groups)}`);
  for (const g of groups) t.group(g, 'groups');
  t.wait(timeoutMs, 'timeoutMs', t.MAX_TIMEOUT_MS);
  const temp = dataDir === undefined;
  const dir = temp ? fs.mkdtempSync(path.join(os.tmpdir(), 'dongting-')) : dataDir;
  const servers = [];
  const cluster = new LocalCluster(START, servers, [...groups], dir, temp);
  try {
    let configs;
    try {
      configs = native.localClusterConfigs(nodes, [...groups], dir);
    } catch (e) {
      throw fromThrown(e);
    }
    for (const cfg of configs) servers.push(await EmbeddedServer.start(cfg));
    await cluster.waitReady(timeoutMs);
    return cluster;
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

module.exports = { EmbeddedServer, LocalCluster, startLocalCluster };
