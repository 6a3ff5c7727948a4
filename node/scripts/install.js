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

function resolveCli() {
  // The CLI is a dependency of this package; when the package is installed
  // from a folder (a link), npm installs no dependencies of it, and a
  // registry install may hoist them into the installing project.
  const roots = [pkgDir, process.cwd(), process.env.INIT_CWD].filter(Boolean);
  try {
    const manifestPath = require.resolve('@napi-rs/cli/package.json', { paths: roots });
    return path.join(path.dirname(manifestPath), require(manifestPath).bin.napi);
  } catch {
    return null;
  }
}

/** The napi-rs CLI's entry script, installed into the package (from its lock file) when missing. */
function napiCli() {
  const found = resolveCli();
  if (found !== null || !fs.existsSync(path.join(pkgDir, 'package-lock.json'))) return found;
  console.error('dongting: installing the build tools of the package (npm ci in the package directory)');
  const npm = process.env.npm_execpath;
  const args = ['ci', '--ignore-scripts', '--omit=dev', '--no-audit', '--no-fund'];
  const r = npm
    ? spawnSync(process.execPath, [npm, ...args], { cwd: pkgDir, stdio: 'inherit' })
    : spawnSync('npm', args, { cwd: pkgDir, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0 ? resolveCli() : null;
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
  const cli = napiCli();
  if (cli === null) {
    console.error('dongting: building the native module needs @napi-rs/cli, which could not be installed');
    return 1;
  }
  const args = [cli, 'build', '--platform', '--manifest-path', manifest, '--output-dir', pkgDir, '--no-js'];
  if ((process.env.DONGTING_BUILD_PROFILE || 'release') === 'release') args.push('--release');
  console.error(`dongting: building the native module for ${name} (cargo, this takes a few minutes)`);
  const r = spawnSync(process.execPath, args, { cwd: pkgDir, stdio: 'inherit' });
  return r.status === null ? 1 : r.status;
}

process.exitCode = main();
