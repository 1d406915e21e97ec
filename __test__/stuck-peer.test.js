'use strict'
// Resource exhaustion by peers that do not read: a raw ZMTP DEALER that floods pings and never
// reads its pongs, and one that stops reading while the server broadcasts. A peer that does
// not read may only ever hurt itself: honest clients keep being answered, a client that
// leaves is forgotten, and close() still resolves.

const test = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { setTimeout: sleep } = require('node:timers/promises')
const { Client, Server } = require('..')
const { tmpEndpoint } = require('./helpers')

/** ZMTP 3.0 greeting (NULL) and READY for a DEALER. */
function handshake () {
  const greeting = Buffer.alloc(64)
  greeting[0] = 0xff
  greeting[9] = 0x7f
  greeting[10] = 3
  greeting.write('NULL', 12)
  const props = Buffer.concat([
    Buffer.from([5]), Buffer.from('READY'),
    Buffer.from([11]), Buffer.from('Socket-Type'), Buffer.from([0, 0, 0, 6]), Buffer.from('DEALER'),
  ])
  return Buffer.concat([greeting, Buffer.from([0x04, props.length]), props])
}

/** `count` zerowire pings ([corr 0x00 'P' seq, empty body]) as ZMTP frames. */
function pings (count) {
  const one = 2 + 6 + 2
  const out = Buffer.alloc(count * one)
  for (let i = 0; i < count; i++) {
    const at = i * one
    out[at] = 0x01 // MORE
    out[at + 1] = 6
    out[at + 2] = 0x00
    out[at + 3] = 0x50 // 'P'
    out.writeUInt32LE(i, at + 4)
    out[at + 8] = 0x00
    out[at + 9] = 0
  }
  return out
}

/** A raw DEALER on `endpoint` that never reads what it is sent (its socket is paused). */
async function deafPeer (endpoint, after) {
  const address = endpoint.startsWith('ipc://')
    ? { path: endpoint.slice('ipc://'.length) }
    : { host: '127.0.0.1', port: Number(endpoint.split(':').pop()) }
  const sock = net.connect(address)
  sock.on('error', () => {})
  await new Promise((resolve) => sock.once('connect', resolve))
  sock.pause()
  sock.write(handshake())
  if (after) sock.write(after)
  return sock
}

/** `n` requests from a fresh honest client, one at a time; resolves with how many were answered. */
async function honest (endpoint, n) {
  const client = new Client(endpoint, { requestTimeoutMs: 3000 })
  let answered = 0
  try {
    for (let i = 0; i < n; i++) {
      if (await client.request('{"type":"echo"}').then(() => true, () => false)) answered++
    }
  } finally {
    await client.close()
  }
  return answered
}

/** close() within `ms`, or a failure naming the wedge. */
async function closesWithin (server, ms) {
  const closed = await Promise.race([server.close().then(() => true), sleep(ms).then(() => false)])
  assert.equal(closed, true, 'server.close() resolved')
}

for (const [transport, bind] of [['ipc', () => tmpEndpoint()], ['tcp', () => 'tcp://127.0.0.1:0']]) {
  test(`[${transport}] a peer flooding pings and never reading its pongs hurts only itself`, { timeout: 120_000 }, async () => {
    const server = new Server(bind())
    server.route('echo', (raw) => raw)
    try {
      const deaf = await deafPeer(server.endpoint, pings(300_000))
      try {
        // Let the flood be read and the pongs pile up behind the unread socket.
        await sleep(1500)
        assert.equal(await honest(server.endpoint, 8), 8, 'every honest request answered')
        // An honest client leaving while the deaf one is still stuck, then a new one.
        assert.equal(await honest(server.endpoint, 3), 3)
        assert.ok(server.stats().peerRefused > 0, 'the pongs it could not take were refused, counted')
      } finally {
        deaf.destroy()
      }
      assert.equal(await honest(server.endpoint, 2), 2, 'served after the deaf peer left')
    } finally {
      await closesWithin(server, 10_000)
    }
  })

  test(`[${transport}] a plain DEALER that stops reading during a broadcast flood hurts only itself`, { timeout: 120_000 }, async () => {
    const server = new Server(bind())
    server.route('echo', (raw) => raw)
    // A plain DEALER: it says something so that the server knows it, then never reads.
    const hello = Buffer.from([0x01, 0x00, 0x00, 2, 0x68, 0x69])
    const deaf = await deafPeer(server.endpoint, hello)
    const watcher = new Client(server.endpoint, { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 1000 })
    const disconnects = []
    watcher.on('disconnect', () => disconnects.push(Date.now()))
    try {
      await watcher.request('{"type":"echo"}')
      assert.equal(server.clients().length >= 2, true)
      const body = 'x'.repeat(100)
      const until = Date.now() + 3000
      let sent = 0
      while (Date.now() < until) {
        for (let i = 0; i < 2000; i++) if (server.broadcast(body)) sent++
        await sleep(10)
      }
      assert.ok(sent > 100_000, `broadcast ${sent}`)
      assert.equal(await honest(server.endpoint, 8), 8, 'honest requests answered during the flood')
      assert.deepEqual(disconnects, [], 'the honest client\'s heartbeat never timed out')
      assert.ok(server.stats().peerRefused > 0, 'what the deaf peer could not take was refused, counted')
    } finally {
      deaf.destroy()
      await watcher.close()
      await closesWithin(server, 10_000)
    }
  })
}
