'use strict'
// Who is at the other end of an ipc:// connection, as the kernel says (SO_PEERCRED): the
// server's ctx and 'connect' carry the client process's uid and pid, an `authorize` function
// can refuse by uid, and a client refuses a server run by a uid it does not expect before it
// writes anything. The other user is nobody, in a process of its own (the tests skip unless
// run as root with setpriv).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync, execFileSync } = require('node:child_process')
const { Client, Server, curveKeypair } = require('..')
const { ROOT, waitFor, scratchDir } = require('./helpers')

const NOBODY = (() => {
  try {
    return Number(execFileSync('id', ['-u', 'nobody']).toString().trim())
  } catch {
    return 65534
  }
})()
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0
const asRoot = process.getuid?.() === 0
const skip = !(hasSetpriv && asRoot) && 'needs root and setpriv (util-linux) to run a process as nobody'

/** A directory nobody can reach (0755), for a socket file nobody may connect to (0666). */
function openDir () {
  const dir = scratchDir('zw-cred-')
  fs.chmodSync(dir, 0o755)
  return dir
}

/**
 * Runs `source` as uid nobody; resolves with { code, stdout, stderr, pid }. Lines it prints
 * are JSON; `lines` collects them as they come (for a process that keeps running).
 */
function asNobody (source, { timeoutMs = 30_000 } = {}) {
  const child = spawn('setpriv', [
    `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', source,
  ], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  const run = { child, lines: [], stderr: '' }
  let partial = ''
  child.stdout.on('data', (d) => {
    partial += d
    let nl
    while ((nl = partial.indexOf('\n')) >= 0) {
      run.lines.push(JSON.parse(partial.slice(0, nl)))
      partial = partial.slice(nl + 1)
    }
  })
  child.stderr.on('data', (d) => { run.stderr += d })
  run.done = new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
  return run
}

test('ctx and \'connect\' carry the ipc peer\'s uid and pid: a client of our uid and one run as nobody', { skip }, async () => {
  const endpoint = `ipc://${path.join(openDir(), 's.sock')}`
  const server = new Server(endpoint, { socketMode: 0o666 })
  const connects = []
  server.on('connect', (id, info) => connects.push({ id, info }))
  server.route('who', (raw, ctx) => JSON.stringify({ id: ctx.clientId, uid: ctx.uid, pid: ctx.pid }))
  try {
    const ours = new Client(endpoint)
    const mine = JSON.parse(await ours.request('{"type":"who"}'))
    assert.deepEqual({ uid: mine.uid, pid: mine.pid }, { uid: process.getuid(), pid: process.pid })
    await ours.close()

    const theirs = asNobody(`
      const { Client } = require(${JSON.stringify(ROOT)})
      const c = new Client(${JSON.stringify(endpoint)})
      c.request('{"type":"who"}').then(
        (r) => console.log(JSON.stringify({ pid: process.pid, uid: process.getuid(), reply: JSON.parse(r) })),
        (e) => console.log(JSON.stringify({ error: e.code, message: e.message })),
      ).finally(() => c.close())
    `)
    const { code } = await theirs.done
    assert.equal(code, 0, theirs.stderr)
    const [out] = theirs.lines
    assert.equal(out.error, undefined, out.message)
    assert.equal(out.uid, NOBODY, 'the child runs as nobody')
    assert.deepEqual({ uid: out.reply.uid, pid: out.reply.pid }, { uid: NOBODY, pid: out.pid })

    // 'connect' said the same, from the kernel (not from what the hello announced).
    const byId = new Map(connects.map((c) => [c.id, c.info]))
    assert.equal(byId.get(mine.id).uid, process.getuid())
    assert.equal(byId.get(mine.id).pid, process.pid)
    assert.equal(byId.get(out.reply.id).uid, NOBODY)
    assert.equal(byId.get(out.reply.id).pid, out.pid)
  } finally {
    await server.close()
  }
})

test('authorize refuses uid nobody over ipc: nothing of it reaches a handler, its requests fail', { skip }, async () => {
  const endpoint = `ipc://${path.join(openDir(), 's.sock')}`
  const asked = []
  const server = new Server(endpoint, {
    socketMode: 0o666,
    authorize: (publicKey, info) => {
      asked.push({ publicKey, ...info })
      return info.uid !== NOBODY
    },
  })
  const handled = []
  server.route('hit', (raw, ctx) => { handled.push(ctx.uid); return 'ok' })
  const connected = []
  server.on('connect', (id, info) => connected.push(info.uid))
  try {
    const theirs = asNobody(`
      const { Client } = require(${JSON.stringify(ROOT)})
      const c = new Client(${JSON.stringify(endpoint)}, { requestTimeoutMs: 1500 })
      for (let i = 0; i < 20; i++) c.send('{"type":"hit"}')
      c.request('{"type":"hit"}').then(
        (r) => console.log(JSON.stringify({ reply: r })),
        (e) => console.log(JSON.stringify({ error: e.code })),
      ).finally(() => c.close())
    `)
    const { code } = await theirs.done
    assert.equal(code, 0, theirs.stderr)
    assert.ok(theirs.lines[0].error, `the refused client's request was answered: ${JSON.stringify(theirs.lines[0])}`)
    const refused = asked.filter((a) => a.uid === NOBODY)
    assert.ok(refused.length >= 1, 'authorize was asked about nobody')
    assert.equal(refused[0].publicKey, null, 'no CURVE: no key')
    assert.equal(refused[0].socketType, 'DEALER')
    assert.equal(typeof refused[0].pid, 'number')

    // Control: a client of our uid is let in, so the route does work.
    const ours = new Client(endpoint)
    assert.equal(await ours.request('{"type":"hit"}'), 'ok')
    await ours.close()
    assert.deepEqual(handled, [process.getuid()], 'only our own client\'s message was handled')
    assert.deepEqual(connected, [process.getuid()], 'nobody never counted as connected')
    assert.ok(server.stats().unauthorized >= 1)
  } finally {
    await server.close()
  }
})

test('a Client refuses an ipc server run by another uid before writing to it; expectServerUid lets it in', { skip }, async () => {
  // nobody's own directory, where it binds its server.
  const dir = path.join(openDir(), 'nobody')
  fs.mkdirSync(dir, { mode: 0o755 })
  fs.chownSync(dir, NOBODY, NOBODY)
  const endpoint = `ipc://${path.join(dir, 's.sock')}`
  const server = asNobody(`
    const { Server } = require(${JSON.stringify(ROOT)})
    const s = new Server(${JSON.stringify(endpoint)}, { socketMode: 0o666 })
    let secrets = 0
    let connects = 0
    s.on('connect', () => { connects++ })
    s.route('secret', () => { secrets++; return 'got it' })
    s.route('count', () => JSON.stringify({ secrets, connects }))
    console.log(JSON.stringify({ ready: true }))
    process.stdin.on('data', () => s.close())
  `)
  try {
    await waitFor(() => server.lines.length > 0 || server.child.exitCode !== null, 15_000)
    assert.deepEqual(server.lines[0], { ready: true }, server.stderr)

    const wary = new Client(endpoint, { requestTimeoutMs: 3000 })
    const connectError = new Promise((resolve) => wary.once('connectError', resolve))
    wary.send('{"type":"secret","body":"for root only"}')
    await assert.rejects(wary.request('{"type":"secret"}'), { code: 'ERR_ZEROWIRE_PEER_UID' })
    const err = await connectError
    assert.equal(err.code, 'ERR_ZEROWIRE_PEER_UID')
    assert.match(err.message, new RegExp(`uid ${NOBODY}`))
    assert.equal(wary.stats().connected, false)
    await wary.close()

    const trusting = new Client(endpoint, { expectServerUid: NOBODY })
    assert.deepEqual(JSON.parse(await trusting.request('{"type":"count"}')), { secrets: 0, connects: 1 },
      'the refused client delivered nothing and never connected')
    await trusting.close()
  } finally {
    server.child.stdin.end('stop\n')
    await server.done
  }
})

test('CURVE over ipc: authorize gets the proven key and the uid and pid; ctx has all three', { skip: process.platform === 'win32' && 'no peer credentials on Windows' }, async () => {
  const endpoint = `ipc://${path.join(openDir(), 's.sock')}`
  const serverKeys = curveKeypair()
  const clientKeys = curveKeypair()
  const asked = []
  const server = new Server(endpoint, {
    curve: serverKeys,
    authorize: (publicKey, info) => { asked.push({ publicKey, ...info }); return true },
  })
  server.route('who', (raw, ctx) => JSON.stringify({ key: ctx.publicKey, uid: ctx.uid, pid: ctx.pid }))
  try {
    const client = new Client(endpoint, { curve: { serverPublicKey: serverKeys.publicKey, ...clientKeys } })
    const who = JSON.parse(await client.request('{"type":"who"}'))
    await client.close()
    assert.deepEqual(who, { key: clientKeys.publicKey, uid: process.getuid(), pid: process.pid })
    assert.equal(asked.length, 1)
    assert.equal(asked[0].publicKey, clientKeys.publicKey)
    assert.equal(asked[0].uid, process.getuid())
    assert.equal(asked[0].pid, process.pid)
  } finally {
    await server.close()
  }
})

test('expectServerUid: a number or false, nothing else', () => {
  for (const bad of ['0', -1, 1.5, 2 ** 32, null, true]) {
    assert.throws(() => new Client('ipc:///tmp/zw-none.sock', { expectServerUid: bad }), /expectServerUid/, String(bad))
  }
  return Promise.all([
    new Client('ipc:///tmp/zw-none.sock', { expectServerUid: false }).close(),
    new Client('ipc:///tmp/zw-none.sock', { expectServerUid: 0 }).close(),
  ])
})

test('authorize without curve: a function, and only on ipc://', () => {
  assert.throws(() => new Server('tcp://127.0.0.1:0', { authorize: () => true }), /ipc:\/\//)
  assert.throws(() => new Server(`ipc://${path.join(openDir(), 's.sock')}`, { authorize: ['x'.repeat(40)] }), /needs options.curve/)
})
