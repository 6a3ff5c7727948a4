'use strict';
// Dongting for Node.js: a DtKV client and an embedded RAFT server node over
// the same Rust core as every other language. See README.md.

const native = require('./lib/native');
const { fromInfo, fromThrown, ...errors } = require('./lib/errors');
const { KvClient } = require('./lib/client');
const { Watch } = require('./lib/watch');
const { Lock } = require('./lib/lock');
const { EmbeddedServer, LocalCluster, startLocalCluster } = require('./lib/server');
const { NodeKind, KvNode } = require('./lib/types');

/** The symbolic name of an error code (`"NOT_FOUND"`, `"UNKNOWN"`...). */
function codeName(code) {
  return native.codeName(code);
}

module.exports = {
  KvClient,
  Watch,
  Lock,
  EmbeddedServer,
  LocalCluster,
  startLocalCluster,
  NodeKind,
  KvNode,
  codeName,
  version: native.version(),
  ...errors,
};
