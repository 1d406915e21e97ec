'use strict'
// ipc:// socket files: stale files replaced, live servers and foreign files not clobbered,
// paths over the OS limit refused, owner-only permissions that really keep other users out.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { once } = require('node:events')
const { Client, Server } = require('..')
const { ROOT, tmpEndpoint, scratchDir } = require('./helpers')

function fileOf (endpoint) {
  return endpoint.slice('ipc://'.length)
}

/** A server in a child process; resolves once it is bound. */
async function childServer (endpoint) {
  const child = spawn(process.execPath, ['-e', `
    const { Server } = require(${JSON.stringify(ROOT)})
    const s = new Server(${JSON.stringify(endpoint)})
    s.route('who', () => String(process.pid))
    console.log('bound')
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  await once(child.stdout, 'data')
  return child
}

test('a socket file left by a SIGKILLed server is replaced; a live server is refused', async () => {
  const ep = tmpEndpoint()
  const first = await childServer(ep)
  // While it lives, binding the same path is refused and its file is left alone.
  assert.throws(() => new Server(ep), { code: 'EADDRINUSE', message: /a server is listening/ })
  const c = new Client(ep)
  assert.equal(await c.request('{"type":"who"}'), String(first.pid))
  // The client must have seen the death: a request written on the dead connection would
  // rightly fail with ECONNRESET, and that is not what this test is about.
  const gone = once(c, 'disconnect')
  // An idle client does not keep the process alive: once the child's exit is seen, nothing
  // else would, and the test would end before the disconnect is delivered.
  const hold = setInterval(() => {}, 1000)
  first.kill('SIGKILL')
  await once(first, 'exit')
  await gone
  clearInterval(hold)
  assert.ok(fs.existsSync(fileOf(ep)), 'the dead server left its socket file')
  const second = new Server(ep)
  try {
    second.route('who', () => 'second')
    assert.equal(await c.request('{"type":"who"}', { timeoutMs: 5000 }), 'second')
  } finally {
    await c.close()
    await second.close()
  }
  assert.equal(fs.existsSync(fileOf(ep)), false, 'close() removes the socket file')
})

test('a path that exists and is not a socket is never replaced', () => {
  const ep = tmpEndpoint()
  fs.writeFileSync(fileOf(ep), 'precious')
  assert.throws(() => new Server(ep), { code: 'EADDRINUSE', message: /not a socket/ })
  assert.equal(fs.readFileSync(fileOf(ep), 'utf8'), 'precious')
})

test('an ipc path over the 107-byte limit is refused with a clear error', () => {
  const dir = scratchDir('zw-')
  const long = path.join(dir, 'x'.repeat(120 - dir.length) + '.sock')
  assert.throws(() => new Server(`ipc://${long}`), (err) => {
    assert.equal(err.code, 'ENAMETOOLONG')
    assert.match(err.message, /107-byte Unix socket limit/)
    return true
  })
  assert.throws(() => new Client(`ipc://${long}`), { code: 'ERR_INVALID_ARG_VALUE', message: /107/ })
  assert.equal(fs.existsSync(long), false)
})

test('tcp: port 0 picks a free port; a taken port is EADDRINUSE', async () => {
  const s = new Server('tcp://127.0.0.1:0')
  assert.match(s.endpoint, /^tcp:\/\/127\.0\.0\.1:\d+$/)
  assert.throws(() => new Server(s.endpoint), { code: 'EADDRINUSE' })
  s.route('ping', () => 'pong')
  const c = new Client(s.endpoint)
  assert.equal(await c.request('{"type":"ping"}'), 'pong')
  await c.close()
  await s.close()
})

// Root passes every permission check, so the test drops to `nobody` to see what another user
// would see. The directory is opened up (0755) so that only the socket's own mode decides.
const setpriv = spawnSync('setpriv', ['--version']).status === 0
const asRoot = process.getuid?.() === 0
test('the socket is owner-only by default: another uid cannot connect', { skip: !(setpriv && asRoot) && 'needs root and setpriv (util-linux) to switch to nobody' }, async () => {
  const dir = scratchDir('zw-perm-')
  fs.chmodSync(dir, 0o755)
  const connectAs = (file) => spawnSync('setpriv', [
    '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e',
    `require('net').connect(${JSON.stringify(file)}).on('connect', () => { console.log('connected'); process.exit(0) })
      .on('error', (e) => { console.log(e.code); process.exit(0) })`,
  ], { encoding: 'utf8', timeout: 10_000 }).stdout.trim()

  const privateEp = `ipc://${path.join(dir, 'private.sock')}`
  const closed = new Server(privateEp)
  assert.equal(fs.statSync(fileOf(privateEp)).mode & 0o777, 0o600)
  assert.equal(connectAs(fileOf(privateEp)), 'EACCES')

  const openEp = `ipc://${path.join(dir, 'shared.sock')}`
  const shared = new Server(openEp, { socketMode: 0o666 })
  assert.equal(fs.statSync(fileOf(openEp)).mode & 0o777, 0o666)
  assert.equal(connectAs(fileOf(openEp)), 'connected', 'control: with 0666 the same user gets in')
  await closed.close()
  await shared.close()
})
