'use strict'
// Loads the native addon and exports it as it is.
//
// 1. `zerowire.node` next to this file: built from source here (`npm run build`). It comes
//    first so that a clone tests the addon it just built, never a published one that its
//    optional dependencies may also have installed. The package on the registry ships none.
// 2. The prebuilt package for this platform, one of the main package's optionalDependencies
//    (npm, pnpm and yarn install only the one whose os, cpu and libc match).
// 3. Otherwise one error that names the platform, the package looked for and both fixes.

const fs = require('node:fs')
const path = require('node:path')

const LOCAL = path.join(__dirname, 'zerowire.node')

// glibc or musl: Node's report names the glibc it runs on, and has no such field under musl.
function linuxLibc () {
  try {
    const report = process.report
    if (report && typeof report.getReport === 'function') {
      const exclude = report.excludeNetwork
      report.excludeNetwork = true
      try {
        return report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'
      } finally {
        report.excludeNetwork = exclude
      }
    }
  } catch {}
  try {
    return fs.readFileSync('/usr/bin/ldd', 'latin1').includes('musl') ? 'musl' : 'gnu'
  } catch {
    return 'gnu'
  }
}

// The platform packages' suffix as @napi-rs/cli names them: linux-x64-gnu, darwin-arm64, …
function platformKey () {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${linuxLibc()}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function load () {
  if (fs.existsSync(LOCAL)) return require(LOCAL)
  const key = platformKey()
  const pkg = `zerowire-${key}`
  let cause
  try {
    return require(pkg)
  } catch (err) {
    // A package that is there but fails to load (a wrong libc, a broken file) says why.
    if (err.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes(pkg)) throw err
    cause = err
  }
  const optional = require('./package.json').optionalDependencies || {}
  const prebuilt = Object.keys(optional).map((name) => name.slice('zerowire-'.length))
  const known = prebuilt.includes(key)
  const err = new Error(
    `zerowire: no native addon for ${key} (Node ${process.version}). ` +
    (known
      ? `The prebuilt package ${pkg} is not installed: reinstall with optional dependencies ` +
        '(npm install without --omit=optional or --no-optional; after a lock file made on ' +
        'another platform, delete node_modules and the lock file and install again). '
      : `There is no prebuilt package ${pkg} (prebuilt: ${prebuilt.join(', ') || 'none listed in this copy'}). `) +
    `Or build it from source with Rust's cargo: cd ${__dirname} && npm run build`
  )
  err.code = 'ERR_ZEROWIRE_NO_ADDON'
  err.cause = cause
  throw err
}

module.exports = load()
