#!/usr/bin/env node
// The main package's optionalDependencies (one prebuilt package per platform, see
// package.json's napi.targets) exist only in the packed package.json: `prepack` adds them and
// `postpack` takes them out again. Committed, they would put packages that are not on the
// registry yet (or not yet at this version) into every `npm ci` of a clone, which refuses a
// lock file it cannot complete.
//
//   node scripts/optional-deps.js add | remove
'use strict'
const fs = require('node:fs')
const path = require('node:path')

const file = path.join(__dirname, '..', 'package.json')
const text = fs.readFileSync(file, 'utf8')
const pkg = JSON.parse(text)

// The platform packages' names as `napi create-npm-dirs` made them under npm/.
function platformPackages () {
  const dir = path.join(__dirname, '..', 'npm')
  return fs.readdirSync(dir).sort().map((d) => JSON.parse(fs.readFileSync(path.join(dir, d, 'package.json'), 'utf8')))
}

const action = process.argv[2]
if (action === 'add') {
  const optional = {}
  for (const p of platformPackages()) {
    if (p.version !== pkg.version) throw new Error(`${p.name} is at ${p.version}, zerowire at ${pkg.version}: run npx napi version`)
    optional[p.name] = p.version
  }
  if (Object.keys(optional).length === 0) throw new Error('no platform packages under npm/')
  // After `engines`, where a reader looks for what gets installed.
  const out = {}
  for (const [k, v] of Object.entries(pkg)) {
    if (k === 'optionalDependencies') continue
    out[k] = v
    if (k === 'engines') out.optionalDependencies = optional
  }
  if (!out.optionalDependencies) out.optionalDependencies = optional
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n')
} else if (action === 'remove') {
  delete pkg.optionalDependencies
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n')
} else {
  console.error('usage: node scripts/optional-deps.js add | remove')
  process.exit(1)
}
