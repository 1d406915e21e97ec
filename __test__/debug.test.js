'use strict'
// Why a client is not connected is told, not left to a request timeout: 'connectError' carries
// each failed attempt's reason, a request that times out while never connected names it, and
// NODE_DEBUG=zerowire logs connects, disconnects, failed connects and drops.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { once } = require('node:events')
const { Client, Server, curveKeypair } = require('..')
const { testProtos, uniqAddress, runNode, scratchDir } = require('./helpers')

// An idle client does not keep the process alive; while these wait for its events, this does.
function keepAlive (t) {
  const timer = setInterval(() => {}, 1000)
  t.after(() => clearInterval(timer))
}

test('[ipc] a mistyped path: connectError ENOENT with the errno, and the request timeout names it', async (t) => {
  keepAlive(t)
  const dir = scratchDir('zw-')
  const endpoint = `ipc://${path.join(dir, 'no-such-dir', 'svc.sock')}`
  const client = new Client(endpoint, { requestTimeoutMs: 400, reconnectIntervalMs: 50 })
  const [err] = await once(client, 'connectError')
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'ENOENT')
  assert.equal(err.errno, os.constants.errno.ENOENT)
  assert.equal(err.endpoint, endpoint)
  assert.equal(typeof err.retryInMs, 'number')
  assert.match(err.message, /connect to ipc:.*svc\.sock failed: /)
  await assert.rejects(client.request('x'), (e) => e.code === 'ETIMEDOUT' && /not connected: .*\(ENOENT\)/.test(e.message) && e.cause.code === 'ENOENT')
  await client.close()
})

test('[tcp] a server holding another CURVE key: connectError EAUTH with the reason', async (t) => {
  keepAlive(t)
  const server = new Server('tcp://127.0.0.1:0', { curve: curveKeypair() })
  const client = new Client(server.endpoint, { curve: { serverPublicKey: curveKeypair().publicKey } })
  const [err] = await once(client, 'connectError')
  assert.equal(err.code, 'EAUTH')
  assert.equal(err.endpoint, server.endpoint)
  assert.equal(err.errno, undefined)
  assert.match(err.message, /^connect to tcp:.* failed: \S/)
  await client.close()
  await server.close()
})

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] connectError until a server binds, then ready; a later timeout says only that it timed out`, async (t) => {
    keepAlive(t)
    const endpoint = await uniqAddress(proto)
    const client = new Client(endpoint, { requestTimeoutMs: 300, reconnectIntervalMs: 20, reconnectMaxIntervalMs: 100 })
    const errors = []
    client.on('connectError', (err) => errors.push(err))
    const [first] = await once(client, 'connectError')
    // ipc: the socket file is not there (ENOENT); tcp: the crate retries refused connects inside
    // one attempt, so it ends in a timeout.
    assert.equal(first.code, proto === 'ipc' ? 'ENOENT' : 'ETIMEDOUT')
    assert.equal(first.endpoint, endpoint)
    const server = new Server(endpoint)
    server.route('slow', () => new Promise(() => {}))
    await once(client, 'ready')
    const before = errors.length
    await assert.rejects(client.request('{"type":"slow"}'), { code: 'ETIMEDOUT', message: 'request timed out' })
    assert.equal(errors.length, before, 'no failed attempts while connected')
    await client.close()
    await server.close()
  })

  test(`[${proto}] NODE_DEBUG=zerowire logs connects, disconnects, failed connects, unrouted messages and drops`, async () => {
    const endpoint = await uniqAddress(proto)
    const source = `
      const { once } = require('node:events')
      const { Client, Server } = require('.')
      const keepAlive = setInterval(() => {}, 1000) // an idle client does not hold the process
      ;(async () => {
        const server = new Server(${JSON.stringify(endpoint)})
        const client = new Client(server.endpoint, { name: 'dbg', reconnectIntervalMs: 20, reconnectMaxIntervalMs: 50, lingerMs: 0 })
        await once(client, 'ready')
        client.send('{"type":"nowhere"}')
        await client.request('{"type":"nowhere"}').catch(() => {})
        const gone = once(client, 'disconnect')
        const failed = once(client, 'connectError')
        await server.close()
        await gone
        await failed
        for (let i = 0; i < 10; i++) client.send('lost')
        await client.close()
        clearInterval(keepAlive)
      })()
    `
    const on = await runNode(source, { env: { NODE_DEBUG: 'zerowire' } })
    assert.equal(on.code, 0, on.stderr)
    const lines = on.stderr.split('\n').filter((l) => l.startsWith(`ZEROWIRE `))
    const has = (re) => assert.ok(lines.some((l) => re.test(l)), `${re} in:\n${on.stderr}`)
    has(/server .*: client \w+ connected \{"pid":\d+/)
    has(/client: connected to .* \(client id \w+, server pid \d+\)/)
    has(/server .*: no route for a message from client \w+; dropped/)
    has(/client: disconnected from .*, reconnecting/)
    has(new RegExp(`client: connect to .* failed: ${proto === 'ipc' ? 'ENOENT' : 'ETIMEDOUT'} \\(.+\\), next attempt in \\d+ ms`))
    has(/client: dropped 10 sends \(closed\)/)

    const off = await runNode(source, { env: { NODE_DEBUG: '' } })
    assert.equal(off.code, 0, off.stderr)
    assert.equal(off.stderr, '', 'silent without NODE_DEBUG')
  })
}
