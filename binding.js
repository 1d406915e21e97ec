'use strict'
// Loads the native addon and exports it as it is.
//
// 1. `zerowire.node` next to this file: built from source here (`npm run build`). It comes
//    first so that a clone tests the addon it just built, never a published one that its
//    optional dependencies may also have installed. The package on the registry ships none.
// 2. The prebuilt package for this platform, one of the main package's optionalDependencies
//    (npm, pnpm and yarn install only the one whose os, cpu and libc match).
// 3. Otherwise one error that names the platform, the package looked for and both fixes; or,
//    when the package is there but linked against a newer glibc, one that names both glibcs.

const fs = require('node:fs')
const path = require('node:path')

const LOCAL = path.join(__dirname, 'zerowire.node')

/** The header of Node's diagnostic report (without its slow network part), if it has one. */
function reportHeader () {
  try {
    const report = process.report
    if (report && typeof report.getReport === 'function') {
      const exclude = report.excludeNetwork
      report.excludeNetwork = true
      try {
        return report.getReport().header
      } finally {
        report.excludeNetwork = exclude
      }
    }
  } catch {}
  return undefined
}

// glibc or musl: Node's report names the glibc it runs on, and has no such field under musl.
function linuxLibc () {
  const header = reportHeader()
  if (header) return header.glibcVersionRuntime ? 'gnu' : 'musl'
  try {
    return fs.readFileSync('/usr/bin/ldd', 'latin1').includes('musl') ? 'musl' : 'gnu'
  } catch {
    return 'gnu'
  }
}

/** The glibc this process runs on, as Node's report names it. */
function glibcRuntime () {
  const header = reportHeader()
  return (header && header.glibcVersionRuntime) || 'unknown'
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
    // Linked against a newer glibc than this system's: say which, and the way out.
    const needs = err.code === 'ERR_DLOPEN_FAILED' && /version `GLIBC_([\d.]+)' not found/.exec(String(err.message))
    if (needs) {
      const coded = new Error(
        `zerowire: the prebuilt package ${pkg} needs glibc ${needs[1]} or later; this system has ` +
        `glibc ${glibcRuntime()}. Build the addon from source with Rust's cargo: cd ${__dirname} && npm run build`
      )
      coded.code = 'ERR_ZEROWIRE_NO_ADDON'
      coded.cause = err
      throw coded
    }
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
