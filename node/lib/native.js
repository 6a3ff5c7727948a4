'use strict';
// Loads the native module: `dongting.<platform>.node` next to the package
// (built from source at install time), else the prebuilt package
// `@dongting/<platform>`. DONGTING_NATIVE names a file to load instead.

const path = require('node:path');
const { platformName } = require('./platform');

function load() {
  const name = platformName();
  const tried = [];
  const candidates = [];
  if (process.env.DONGTING_NATIVE) candidates.push(path.resolve(process.env.DONGTING_NATIVE));
  candidates.push(path.join(__dirname, '..', `dongting.${name}.node`));
  candidates.push(`@dongting/${name}`);
  for (const c of candidates) {
    try {
      return require(c);
    } catch (e) {
      if (e && e.code !== 'MODULE_NOT_FOUND') throw e;
      tried.push(c);
    }
  }
  throw new Error(
    `dongting: no native module for ${name}; tried ${tried.join(', ')}. ` +
      'Install the prebuilt package for this platform, or build from source ' +
      '(`npm run build` in the package directory; needs Rust and cargo).',
  );
}

module.exports = load();
