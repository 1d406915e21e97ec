#!/usr/bin/env node
// Builds the addon from source with cargo and puts it where index.js loads it.
// Used by `npm install` (the package ships no prebuilt binaries) and `npm run build`.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const debug = process.argv.includes('--debug')
const args = ['build', '-p', 'zerowire', '--lib']
if (!debug) args.push('--release')
// The SQLite sink (server.route(name).toSqlite) compiles SQLite from source, which adds about a
// minute to the first build; ZEROWIRE_SQLITE=0 leaves it out.
if (process.env.ZEROWIRE_SQLITE === '0') args.push('--no-default-features')
const r = spawnSync('cargo', args, { cwd: root, stdio: 'inherit' })
if (r.error) {
  console.error(`zerowire: could not run cargo (${r.error.message}). Install Rust: https://rustup.rs`)
  process.exit(1)
}
if (r.status !== 0) process.exit(r.status ?? 1)

const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target')
const lib = { linux: 'libzerowire.so', darwin: 'libzerowire.dylib', win32: 'zerowire.dll' }[process.platform]
const from = path.join(targetDir, debug ? 'debug' : 'release', lib)
const to = path.join(root, 'zerowire.node')
// Copy to a temporary name and rename: a process that has the old file loaded keeps it intact.
fs.copyFileSync(from, to + '.tmp')
fs.renameSync(to + '.tmp', to)
console.log(`zerowire: built ${path.relative(process.cwd(), to) || to}`)
