'use strict'
// CURVE over tcp://: zerowire with zerowire, with a libzmq DEALER and with a libzmq ROUTER
// (pyzmq, which has libsodium); who is refused and that nothing of theirs reaches a handler;
// the protected default for addresses other hosts can reach.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const readline = require('node:readline')
const { spawn } = require('node:child_process')
const { Client, Server, curveKeypair } = require('..')
const { waitFor } = require('./helpers')

const PYTHON = process.env.PYTHON || 'python3'
const LOCAL = 'tcp://127.0.0.1:0'

/** Runs a peer script of __test__/peers to its end; resolves with its JSON output line. */
function runPeer (script, args) {
  const child = spawn(PYTHON, [path.join(__dirname, 'peers', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${script} did not finish`)) }, 20_000)
    child.on('exit', () => {
      clearTimeout(timer)
      try { resolve(JSON.parse(out.trim().split('\n').pop())) } catch (err) { reject(new Error(`${script}: ${out}`)) }
    })
  })
}

/** Starts the pyzmq CURVE ROUTER with `secretKey`; resolves with { endpoint, stop() }. */
function startCurveRouter (secretKey) {
  const child = spawn(PYTHON, [path.join(__dirname, 'peers', 'pyzmq_curve_router.py'), 'tcp://127.0.0.1:0', secretKey], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('pyzmq CURVE router did not start')), 10_000)
    child.once('exit', (code) => reject(new Error(`pyzmq CURVE router exited early (${code})`)))
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer)
      child.removeAllListeners('exit')
      resolve({
        endpoint: line.split(' ')[1],
        stop: () => new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.once('exit', resolve)
          child.kill('SIGKILL')
        }),
      })
    })
  })
}

/** A server that records, per route, who sent what; `keys` the server's key pair. */
function recordingServer (options) {
  const server = new Server(LOCAL, options)
  const seen = { logs: [], whos: [], connects: [], other: 0 }
  server.route('log', (raw, ctx) => { seen.logs.push(ctx.publicKey) })
  server.route('who', (raw, ctx) => { seen.whos.push(ctx.publicKey); return `you are ${ctx.publicKey}` })
  server.on('message', () => { seen.other++ })
  server.on('connect', (id, info) => { seen.connects.push(info.publicKey) })
  return { server, seen }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

test('curveKeypair: Z85 keys of 40 characters, a new pair each call', () => {
  const a = curveKeypair()
  const b = curveKeypair()
  for (const k of [a.publicKey, a.secretKey]) assert.match(k, /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/)
  assert.notEqual(a.publicKey, b.publicKey)
  assert.notEqual(a.secretKey, b.secretKey)
})

test('zerowire Client ↔ CURVE Server: answered, ctx.publicKey and connect info.publicKey are the client\'s key', async () => {
  const keys = curveKeypair()
  const mine = curveKeypair()
  const { server, seen } = recordingServer({ curve: keys })
  const client = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey, ...mine } })
  assert.equal(await client.request('{"type":"who"}'), `you are ${mine.publicKey}`)
  client.send('{"type":"log"}')
  await waitFor(() => seen.logs.length === 1)
  assert.deepEqual(seen.logs, [mine.publicKey])
  assert.deepEqual(seen.connects, [mine.publicKey])
  // Without a key pair of its own, a client gets a fresh one: authenticated all the same.
  const anon = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey } })
  const answer = await anon.request('{"type":"who"}')
  const anonKey = answer.slice('you are '.length)
  assert.equal(anonKey.length, 40)
  assert.notEqual(anonKey, mine.publicKey)
  assert.equal(seen.connects[1], anonKey)
  assert.ok(server.stats().curveHandshakes >= 2)
  await Promise.all([client.close(), anon.close()])
  await server.close()
})

test('pyzmq CURVE DEALER → zerowire CURVE Server: sends routed and the request answered, with its key', async () => {
  const keys = curveKeypair()
  const { server, seen } = recordingServer({ curve: keys })
  const out = await runPeer('pyzmq_curve_dealer.py', [server.endpoint, keys.publicKey])
  assert.equal(out.error, undefined)
  assert.equal(out.corr, '0170793031')
  assert.equal(out.body, `you are ${out.publicKey}`)
  await waitFor(() => seen.logs.length === 100)
  assert.ok(seen.logs.every((k) => k === out.publicKey))
  assert.deepEqual(seen.whos, [out.publicKey])
  assert.deepEqual(seen.connects, [out.publicKey])
  await server.close()
})

test('zerowire Client → pyzmq CURVE ROUTER: requests answered, sends delivered', async () => {
  const keys = curveKeypair()
  const router = await startCurveRouter(keys.secretKey)
  const client = new Client(router.endpoint, { curve: { serverPublicKey: keys.publicKey } })
  for (let i = 0; i < 50; i++) client.send(`n${i}`)
  assert.equal(await client.request('hello'), 'echo:hello')
  await waitFor(async () => JSON.parse(await client.request('stats')).count === 50)
  await client.close()
  await router.stop()
})

test('a plaintext client, zerowire or libzmq, is refused: nothing reaches a handler', async () => {
  const keys = curveKeypair()
  const { server, seen } = recordingServer({ curve: keys })
  const plain = new Client(server.endpoint, { requestTimeoutMs: 3000 })
  plain.send('{"type":"log"}')
  await assert.rejects(plain.request('{"type":"who"}'), (err) => err.code === 'EAUTH' || err.code === 'ETIMEDOUT')
  const py = await runPeer('pyzmq_curve_dealer.py', [server.endpoint, '-'])
  assert.equal(py.error, 'no reply')
  assert.ok(server.stats().curveFailures >= 2)
  assert.deepEqual(seen, { logs: [], whos: [], connects: [], other: 0 })
  assert.equal(server.stats().received, 0)
  await plain.close()
  await server.close()
})

test('authorize as a list: listed keys in, others refused with EAUTH and never handled', async () => {
  const keys = curveKeypair()
  const listed = curveKeypair()
  const other = curveKeypair()
  const { server, seen } = recordingServer({ curve: keys, authorize: [listed.publicKey] })
  const ok = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey, ...listed } })
  assert.equal(await ok.request('{"type":"who"}'), `you are ${listed.publicKey}`)
  const refused = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey, ...other }, requestTimeoutMs: 5000 })
  refused.send('{"type":"log"}')
  await assert.rejects(refused.request('{"type":"who"}'), { code: 'EAUTH' })
  assert.ok(refused.stats().authFailures >= 1)
  // A libzmq client with a key not on the list: refused too.
  const py = await runPeer('pyzmq_curve_dealer.py', [server.endpoint, keys.publicKey, other.publicKey, other.secretKey])
  assert.equal(py.error, 'no reply')
  assert.ok(server.stats().unauthorized >= 2)
  assert.deepEqual(seen.whos, [listed.publicKey])
  assert.deepEqual(seen.logs, [])
  assert.deepEqual(seen.connects, [listed.publicKey])
  await Promise.all([ok.close(), refused.close()])
  await server.close()
})

test('a client trusting the wrong server key fails with EAUTH and delivers nothing', async () => {
  const keys = curveKeypair()
  const impostor = curveKeypair()
  // A zerowire server holding another key than the one the client trusts.
  const { server, seen } = recordingServer({ curve: impostor })
  const client = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey }, requestTimeoutMs: 5000 })
  client.send('{"type":"log"}')
  await assert.rejects(client.request('{"type":"who"}'), { code: 'EAUTH' })
  assert.ok(client.stats().authFailures >= 1)
  assert.equal(client.stats().written, 0)
  // Requests made after the failure fail the same way, without waiting for their timeout.
  await assert.rejects(client.request('{"type":"who"}', { timeoutMs: 60_000 }), { code: 'EAUTH' })
  assert.deepEqual(seen, { logs: [], whos: [], connects: [], other: 0 })
  assert.equal(server.stats().received, 0)
  await client.close()
  await server.close()
  // And a libzmq ROUTER holding another key: it never gets the client's messages.
  const router = await startCurveRouter(impostor.secretKey)
  const fooled = new Client(router.endpoint, { curve: { serverPublicKey: keys.publicKey }, requestTimeoutMs: 5000 })
  fooled.send('secret')
  await assert.rejects(fooled.request('secret request'), { code: 'EAUTH' })
  const honest = new Client(router.endpoint, { curve: { serverPublicKey: impostor.publicKey } })
  assert.deepEqual(JSON.parse(await honest.request('stats')), { count: 0 })
  await Promise.all([fooled.close(), honest.close()])
  await router.stop()
})

test('authorize as a function: asked with the key; a refused client is disconnected and nothing of it handled', async () => {
  const keys = curveKeypair()
  const allowed = curveKeypair()
  const other = curveKeypair()
  const asked = []
  const { server, seen } = recordingServer({
    curve: keys,
    authorize: async (publicKey, info) => {
      asked.push(info)
      // Decided later than the client's first messages arrive: they wait, none is handled.
      await sleep(50)
      return publicKey === allowed.publicKey
    },
  })
  const refused = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey, ...other }, requestTimeoutMs: 3000 })
  for (let i = 0; i < 10; i++) refused.send('{"type":"log"}')
  await assert.rejects(refused.request('{"type":"who"}'), (err) => err.code === 'ECONNRESET' || err.code === 'ETIMEDOUT')
  const ok = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey, ...allowed } })
  ok.send('{"type":"log"}')
  assert.equal(await ok.request('{"type":"who"}'), `you are ${allowed.publicKey}`)
  await waitFor(() => seen.logs.length === 1)
  assert.deepEqual(asked.find((i) => i.publicKey === other.publicKey), { publicKey: other.publicKey, socketType: 'DEALER' })
  assert.ok(asked.some((i) => i.publicKey === allowed.publicKey))
  assert.deepEqual(seen.logs, [allowed.publicKey])
  assert.deepEqual(seen.whos, [allowed.publicKey])
  assert.deepEqual(seen.connects, [allowed.publicKey])
  assert.equal(seen.other, 0)
  assert.ok(server.stats().unauthorized >= 1)
  await Promise.all([ok.close(), refused.close()])
  await server.close()
})

test('authorize as a function that throws refuses, and reports the error', async () => {
  const keys = curveKeypair()
  const { server, seen } = recordingServer({ curve: keys, authorize: () => { throw new Error('no database') } })
  const errors = []
  server.on('error', (err) => errors.push(err.message))
  const client = new Client(server.endpoint, { curve: { serverPublicKey: keys.publicKey }, requestTimeoutMs: 2000 })
  await assert.rejects(client.request('{"type":"who"}'))
  await waitFor(() => errors.length > 0)
  assert.equal(errors[0], 'no database')
  assert.deepEqual(seen.whos, [])
  assert.deepEqual(seen.connects, [])
  await client.close()
  await server.close()
})

test('protected default: a Server other hosts can reach needs curve or insecure: true', async () => {
  for (const endpoint of ['tcp://0.0.0.0:0', 'tcp://*:0']) {
    assert.throws(() => new Server(endpoint), { code: 'ERR_ZEROWIRE_INSECURE' })
  }
  const open = new Server('tcp://0.0.0.0:0', { insecure: true })
  const secured = new Server('tcp://*:0', { curve: curveKeypair() })
  const loopback = new Server('tcp://127.0.0.1:0')
  const named = new Server('tcp://localhost:0')
  await Promise.all([open.close(), secured.close(), loopback.close(), named.close()])
})

test('curve options are checked: Z85 keys, matching halves, authorize only with curve', () => {
  const keys = curveKeypair()
  const other = curveKeypair()
  assert.throws(() => new Server(LOCAL, { curve: { secretKey: 'short' } }), { code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => new Server(LOCAL, { curve: { publicKey: other.publicKey, secretKey: keys.secretKey } }), /public half/)
  assert.throws(() => new Server(LOCAL, { authorize: [keys.publicKey] }), /needs options.curve/)
  assert.throws(() => new Server(LOCAL, { curve: keys, authorize: ['nope'] }), /options.authorize/)
  assert.throws(() => new Server(LOCAL, { curve: keys, authorize: [1] }), /options.authorize/)
  assert.throws(() => new Client('tcp://127.0.0.1:1', { curve: { serverPublicKey: 'x' } }), /serverPublicKey/)
  assert.throws(() => new Client('tcp://127.0.0.1:1', { curve: { serverPublicKey: keys.publicKey, publicKey: keys.publicKey } }), /secretKey/)
  assert.throws(() => new Client('tcp://127.0.0.1:1', { curve: { serverPublicKey: keys.publicKey, publicKey: keys.publicKey, secretKey: other.secretKey } }), /public half/)
})
