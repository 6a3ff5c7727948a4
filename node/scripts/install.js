'use strict';
// Install step: nothing to do when a native module for this platform is
// already there (a prebuilt `@dongting/<platform>` package or a previous
// build); otherwise builds it from the Rust sources of the repository with
// the napi-rs CLI. DONGTING_BUILD_PROFILE=debug builds the dev profile;
// DONGTING_FORCE_BUILD=1 rebuilds even when a module exists.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { platformName } = require('../lib/platform');

const pkgDir = path.join(__dirname, '..');
const name = platformName();

function hasNative() {
  if (fs.existsSync(path.join(pkgDir, `dongting.${name}.node`))) return true;
  try {
    require.resolve(`@dongting/${name}`, { paths: [pkgDir] });
    return true;
  } catch {
    return false;
  }
}

function main() {
  if (!process.env.DONGTING_FORCE_BUILD && hasNative()) return 0;
  const manifest = path.join(pkgDir, '..', 'bindings', 'node', 'Cargo.toml');
  if (!fs.existsSync(manifest)) {
    console.error(
      `dongting: no prebuilt native module for ${name} and no Rust sources at ${manifest}; ` +
        'install from a clone of the repository or on a platform with a prebuilt package.',
    );
    return 1;
  }
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  if (cargo.error || cargo.status !== 0) {
    console.error('dongting: building the native module needs Rust (cargo on PATH): https://rustup.rs');
    return 1;
  }
  let cli;
  try {
    cli = require.resolve('@napi-rs/cli/dist/cli.js', { paths: [pkgDir] });
  } catch {
    console.error('dongting: building the native module needs @napi-rs/cli (npm install in the package directory)');
    return 1;
  }
  const args = [cli, 'build', '--platform', '--manifest-path', manifest, '--output-dir', pkgDir, '--no-js'];
  if ((process.env.DONGTING_BUILD_PROFILE || 'release') === 'release') args.push('--release');
  console.error(`dongting: building the native module for ${name} (cargo, this takes a few minutes)`);
  const r = spawnSync(process.execPath, args, { cwd: pkgDir, stdio: 'inherit' });
  return r.status === null ? 1 : r.status;
}

process.exitCode = main();
