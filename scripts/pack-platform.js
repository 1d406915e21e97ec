#!/usr/bin/env node
// `npm run pack:platform [-- --target <triple>]`: builds the addon for one target, puts it in
// its platform package (npm/<platform>/, made by `napi create-npm-dirs`) and packs that into
// dist/zerowire-<platform>-<version>.tgz.
//
// This machine's own target is built by scripts/build.js (the zerowire.node the test suites
// load), so the tarball carries the very file that was tested. Other targets are built by
// `napi build --platform --cross-compile`, which links with cargo-zigbuild and zig (PyPI:
// `pip install cargo-zigbuild ziglang`). Release builds use LTO and take minutes; a target
// whose addon is already in its package, newer than every source and built for the same glibc
// floor is not built again (`--force` rebuilds).
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { hostTriple, withGlibcFloor } = require('./targets')

const root = path.join(__dirname, '..')
const args = process.argv.slice(2)
const flag = (name) => {
  const i = args.indexOf(name)
  return i === -1 ? undefined : args[i + 1]
}
const force = args.includes('--force')

function run (cmd, argv, opts = {}) {
  console.log(`+ ${cmd} ${argv.join(' ')}`)
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', ...opts })
  if (r.error) throw new Error(`could not run ${cmd}: ${r.error.message}`)
  if (r.status !== 0) process.exit(r.status ?? 1)
  return r
}

// Newest modification time among the files a build reads.
function newestSource () {
  let newest = 0
  const walk = (p) => {
    const st = fs.statSync(p)
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e))
    else newest = Math.max(newest, st.mtimeMs)
  }
  for (const p of ['Cargo.toml', 'Cargo.lock', 'build.rs', 'src', 'core/Cargo.toml', 'core/src',
    'vendor/zeromq/Cargo.toml', 'vendor/zeromq/src']) walk(path.join(root, p))
  return newest
}

// What each cross-built addon in npm/ was built as (its zig target, glibc floor included), so
// that changing ZEROWIRE_GLIBC rebuilds it: the file's age alone cannot tell.
function stampPath (platform) {
  return path.join(root, 'target', 'pack-platform', `${platform}.target`)
}

function stamped (platform) {
  try { return fs.readFileSync(stampPath(platform), 'utf8') } catch { return null }
}

async function main () {
  const { parseTriple } = require('@napi-rs/cli')
  const pkg = require('../package.json')
  const host = hostTriple()
  const target = flag('--target') || host
  if (!pkg.napi.targets.includes(target)) {
    throw new Error(`${target} is not one of package.json's napi.targets: ${pkg.napi.targets.join(', ')}`)
  }
  const { platformArchABI } = parseTriple(target)
  const dir = path.join(root, 'npm', platformArchABI)
  const platformPkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  if (platformPkg.version !== pkg.version) {
    throw new Error(`${platformPkg.name} is at ${platformPkg.version}, zerowire at ${pkg.version}: run npx napi version`)
  }
  const addon = path.join(dir, platformPkg.main)
  const built = withGlibcFloor(target)
  const fresh = fs.existsSync(addon) && fs.statSync(addon).mtimeMs > newestSource() &&
    stamped(platformArchABI) === built

  if (target === host) {
    // Cargo decides what is stale here; a no-op when the tests' build is current.
    run(process.execPath, ['scripts/build.js'])
    fs.copyFileSync(path.join(root, 'zerowire.node'), addon)
  } else if (fresh && !force) {
    console.log(`${path.relative(root, addon)} is newer than the sources and built as ${built}; not rebuilt (--force to rebuild)`)
  } else {
    // --no-js: index.js and binding.js are ours. The type file napi would write is not used.
    run('npx', ['--no-install', 'napi', 'build', '--platform', '--release', '--no-js',
      '--dts', path.join('..', '..', 'target', 'napi-unused.d.ts'),
      '--cross-compile', '--target', built, '--output-dir', path.relative(root, dir)])
    fs.mkdirSync(path.dirname(stampPath(platformArchABI)), { recursive: true })
    fs.writeFileSync(stampPath(platformArchABI), built)
  }
  fs.mkdirSync(path.join(root, 'dist'), { recursive: true })
  run('npm', ['pack', '--pack-destination', path.join(root, 'dist'), dir])
  const tgz = path.join(root, 'dist', `${platformPkg.name}-${platformPkg.version}.tgz`)
  if (!fs.existsSync(tgz)) throw new Error(`npm pack left no ${tgz}`)
  console.log(`zerowire: ${path.relative(root, tgz)} (${(fs.statSync(tgz).size / 1e6).toFixed(1)} MB)`)
}

main().catch((err) => {
  console.error(`pack:platform: ${err.message}`)
  process.exit(1)
})
