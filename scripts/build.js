#!/usr/bin/env node
// Builds the addon from source with cargo and puts it where binding.js loads it first
// (zerowire.node). `npm run build`, in a clone or in an installed node_modules/zerowire (for a
// platform without a prebuilt package); installs do not run it.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { hostTriple, glibcFloor, withGlibcFloor } = require('./targets')

const root = path.join(__dirname, '..')
const debug = process.argv.includes('--debug')
const args = ['build', '-p', 'zerowire', '--lib']
if (!debug) args.push('--release')
// An addon built here asks for this system's glibc. ZEROWIRE_GLIBC=2.28 links it against that
// glibc's symbol versions instead, with cargo-zigbuild and zig (PyPI: `pip install
// cargo-zigbuild ziglang`), so that it loads on every system with that glibc or newer: how the
// zerowire-linux-*-gnu packages are built (and the addon CI tests).
let outDir = debug ? 'debug' : 'release'
try {
  if (glibcFloor()) {
    const host = hostTriple()
    if (!host.endsWith('-linux-gnu')) fail(`ZEROWIRE_GLIBC applies to Linux glibc hosts only, not ${host}`)
    args[0] = 'zigbuild'
    args.push('--target', withGlibcFloor(host))
    outDir = path.join(host, outDir)
  }
} catch (err) {
  fail(err.message)
}
// The SQLite sink (server.route(name).toSqlite) compiles SQLite from source, which adds about a
// minute to the first build; ZEROWIRE_SQLITE=0 leaves it out.
if (process.env.ZEROWIRE_SQLITE === '0') args.push('--no-default-features')
// Inside node_modules cargo's output (about 200 MB) goes to a temporary directory, removed
// afterwards: only zerowire.node stays.
const installed = root.split(path.sep).includes('node_modules') && !process.env.CARGO_TARGET_DIR
const targetDir = process.env.CARGO_TARGET_DIR ||
  (installed ? fs.mkdtempSync(path.join(os.tmpdir(), 'zerowire-build-')) : path.join(root, 'target'))
const r = spawnSync('cargo', args, {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, CARGO_TARGET_DIR: targetDir },
})
let status = 0
try {
  if (r.error) {
    console.error(`zerowire: could not run cargo (${r.error.message}). Install Rust: https://rustup.rs`)
    status = 1
  } else if (r.status !== 0) {
    status = r.status ?? 1
  } else {
    const lib = { linux: 'libzerowire.so', darwin: 'libzerowire.dylib', win32: 'zerowire.dll' }[process.platform]
    const from = path.join(targetDir, outDir, lib)
    const to = path.join(root, 'zerowire.node')
    // Copy to a temporary name and rename: a process that has the old file loaded keeps it intact.
    fs.copyFileSync(from, to + '.tmp')
    fs.renameSync(to + '.tmp', to)
    console.log(`zerowire: built ${path.relative(process.cwd(), to) || to}`)
  }
} finally {
  if (installed) fs.rmSync(targetDir, { recursive: true, force: true })
}
process.exit(status)

function fail (message) {
  console.error(`zerowire: ${message}`)
  process.exit(1)
}
