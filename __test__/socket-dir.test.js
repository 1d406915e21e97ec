'use strict'
// Where a Server binds its ipc:// socket, no other user may take the endpoint over: not in a
// directory others can write to (they could rename the socket and bind their own), not through
// a symbolic link another user planted (it leads into their directory), not in a directory
// another user owns; and never with a mode wider than asked, even for an instant. The attacker
// is uid nobody; the directories are set up as root (the tests skip when not root).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { Server } = require('..')
const { runNode, ROOT, scratchDir } = require('./helpers')

const root = process.getuid && process.getuid() === 0
const NOBODY = (() => {
  try {
    return Number(execFileSync('id', ['-u', 'nobody']).toString().trim())
  } catch {
    return 65534
  }
})()
const skip = root ? false : 'needs root to set up directories of another uid'

/** A fresh directory of root, 0700: a safe place to build each case in. */
function base () {
  return scratchDir('zw-dir-')
}

test('a directory others may write to (0777, not sticky) is refused', { skip }, () => {
  const dir = path.join(base(), 'shared')
  fs.mkdirSync(dir)
  fs.chmodSync(dir, 0o777)
  assert.throws(() => new Server(`ipc://${dir}/s.sock`), { code: 'ERR_ZEROWIRE_UNSAFE_PATH', message: /other users may write/ })
  assert.equal(fs.existsSync(path.join(dir, 's.sock')), false, 'nothing was bound')
})

test('a directory of another user is refused', { skip }, () => {
  const dir = path.join(base(), 'theirs')
  fs.mkdirSync(dir, { mode: 0o755 })
  fs.chownSync(dir, NOBODY, NOBODY)
  assert.throws(() => new Server(`ipc://${dir}/s.sock`), { code: 'ERR_ZEROWIRE_UNSAFE_PATH', message: /another user/ })
})

test('a symbolic link planted by another user is not followed', { skip }, () => {
  const b = base()
  fs.chmodSync(b, 0o755)
  // The attacker's directory, and a link to it where the server expects its own.
  const theirs = path.join(b, 'theirs')
  fs.mkdirSync(theirs, { mode: 0o755 })
  const link = path.join(b, 'run')
  fs.symlinkSync(theirs, link)
  fs.lchownSync(link, NOBODY, NOBODY)
  assert.throws(() => new Server(`ipc://${link}/s.sock`), { code: 'ERR_ZEROWIRE_UNSAFE_PATH', message: /symbolic link of uid/ })
  assert.equal(fs.existsSync(path.join(theirs, 's.sock')), false)
  // A link of our own is fine.
  const ours = path.join(b, 'ours')
  fs.symlinkSync(b, ours)
  const s = new Server(`ipc://${ours}/s.sock`)
  return s.close()
})

test('a sticky shared directory (as /tmp) is fine; the socket is owner-only', { skip }, async () => {
  const dir = path.join(base(), 'tmp')
  fs.mkdirSync(dir)
  fs.chmodSync(dir, 0o1777)
  const s = new Server(`ipc://${dir}/s.sock`)
  try {
    assert.equal(fs.statSync(path.join(dir, 's.sock')).mode & 0o777, 0o600)
  } finally {
    await s.close()
  }
})

/**
 * A directory of `length` bytes in `dir` (made with `mode`): a socket in it fits the OS limit,
 * but the private staging directory next to the socket (about 22 bytes more) does not.
 */
function longDir (dir, length, mode) {
  const d = path.join(dir, 'd'.repeat(length - dir.length - 1))
  fs.mkdirSync(d)
  fs.chmodSync(d, mode)
  return d
}

test('a path too long for the private staging directory: refused in a shared directory, owner-only in a private one, under umask 000', { skip }, async () => {
  const shared = longDir(base(), 92, 0o1777)
  const mine = longDir(base(), 92, 0o700)
  const r = await runNode(`
    process.umask(0)
    const fs = require('node:fs')
    const { Server } = require(${JSON.stringify(ROOT)})
    const out = {}
    try { new Server(${JSON.stringify('ipc://' + shared + '/s.sock')}).close() } catch (e) { out.shared = e.code }
    const p = ${JSON.stringify(mine + '/s.sock')}
    const s = new Server('ipc://' + p)
    out.mode = fs.statSync(p).mode & 0o777
    s.close().then(() => console.log(JSON.stringify(out)))
  `)
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.equal(out.shared, 'ERR_ZEROWIRE_UNSAFE_PATH')
  assert.equal(out.mode, 0o600)
})
