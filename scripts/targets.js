// The Rust target triples the build scripts name: this machine's, and a Linux gnu target with
// the glibc floor ZEROWIRE_GLIBC asks for, as cargo-zigbuild spells it
// (`x86_64-unknown-linux-gnu.2.28`: linked against that glibc's symbol versions).
'use strict'
const { spawnSync } = require('node:child_process')

function hostTriple () {
  const r = spawnSync('rustc', ['-vV'], { encoding: 'utf8' })
  const m = /^host: (\S+)$/m.exec(r.stdout || '')
  if (!m) throw new Error('could not read the host triple from `rustc -vV` (is Rust installed?)')
  return m[1]
}

/** ZEROWIRE_GLIBC, checked; undefined when unset. */
function glibcFloor () {
  const glibc = process.env.ZEROWIRE_GLIBC
  if (glibc !== undefined && !/^2\.\d+$/.test(glibc)) {
    throw new Error(`ZEROWIRE_GLIBC is ${JSON.stringify(glibc)}: a glibc version such as 2.28`)
  }
  return glibc
}

/** `triple` with the glibc floor appended where one is set and the target is Linux gnu. */
function withGlibcFloor (triple) {
  const glibc = glibcFloor()
  return glibc && triple.endsWith('-linux-gnu') ? `${triple}.${glibc}` : triple
}

module.exports = { hostTriple, glibcFloor, withGlibcFloor }
