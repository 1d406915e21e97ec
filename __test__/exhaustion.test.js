'use strict'
// Resource exhaustion. Peers that do not read: a raw ZMTP DEALER that floods pings and never
// reads its pongs, and one that stops reading while the server broadcasts; a peer that does
// not read may only ever hurt itself (honest clients keep being answered, a client that leaves
// is forgotten, close() still resolves). Requests nobody answers, which may not pile up. And a
// JS thread that stops taking what arrives: past the receive bound the engine stops reading,
// so memory stays bounded in bytes and nothing is dropped.

const test = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { setTimeout: sleep } = require('node:timers/promises')
const { Client, Server } = require('..')
const { bindAddress, netAddress, runNode, ROOT, testProtos, tmpEndpoint } = require('./helpers')
const { handshake, HI } = require('./peers/zmtp')


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
  const sock = net.connect(netAddress(endpoint))
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

for (const transport of testProtos('ipc', 'tcp')) {
  const bind = () => bindAddress(transport)
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
    const deaf = await deafPeer(server.endpoint, HI)
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

/** `count` zerowire requests ([corr 0x01 id, body]) as ZMTP frames. */
function requests (count, body) {
  const b = Buffer.from(body)
  const parts = []
  for (let i = 0; i < count; i++) {
    const corr = Buffer.from([0x01, 0, 0, 0, 0])
    corr.writeUInt32LE(i + 1, 1)
    parts.push(Buffer.from([0x01, 5]), corr, Buffer.from([0x00, b.length]), b)
  }
  return Buffer.concat(parts)
}

test('requests nobody answers are bounded, and go with their client', { timeout: 60_000 }, async () => {
  const server = new Server(tmpEndpoint(), { maxPendingRequests: 1000 })
  server.route('silent', () => undefined)
  try {
    const deaf = await deafPeer(server.endpoint, requests(5000, '{"type":"silent"}'))
    try {
      const deadline = Date.now() + 20_000
      while (server.stats().requests < 5000 && Date.now() < deadline) await sleep(20)
      const s = server.stats()
      assert.equal(s.requests, 5000)
      assert.equal(s.pendingRequests, 1000, 'at most maxPendingRequests held')
      assert.equal(s.requestsRefused, 4000, 'the rest answered at once with an error')
    } finally {
      deaf.destroy()
    }
    const deadline = Date.now() + 10_000
    while (server.stats().pendingRequests > 0 && Date.now() < deadline) await sleep(20)
    assert.equal(server.stats().pendingRequests, 0, 'its pending requests went with the client')
    // A refused request reaches its client as an error reply.
    const busy = new Server(tmpEndpoint(), { maxPendingRequests: 1 })
    busy.route('silent', () => undefined)
    const client = new Client(busy.endpoint)
    try {
      const first = client.request('{"type":"silent"}', { timeoutMs: 2000 }).catch((e) => e)
      await assert.rejects(client.request('{"type":"silent"}'), (err) => err.code === 'EREMOTE' && /too many requests/.test(err.message))
      assert.equal((await first).code, 'ETIMEDOUT')
    } finally {
      await client.close()
      await busy.close()
    }
  } finally {
    await closesWithin(server, 10_000)
  }
})

test('requests left unanswered are forgotten after pendingRequestTimeoutMs', { timeout: 30_000 }, async () => {
  const server = new Server(tmpEndpoint(), { pendingRequestTimeoutMs: 300 })
  server.route('silent', () => undefined)
  const client = new Client(server.endpoint)
  try {
    await Promise.all(Array.from({ length: 10 }, () => client.request('{"type":"silent"}', { timeoutMs: 100 }).catch(() => {})))
    assert.equal(server.stats().pendingRequests, 10)
    const deadline = Date.now() + 10_000
    while (server.stats().pendingRequests > 0 && Date.now() < deadline) await sleep(20)
    const s = server.stats()
    assert.equal(s.pendingRequests, 0)
    assert.equal(s.requestsExpired, 10)
  } finally {
    await client.close()
    await closesWithin(server, 10_000)
  }
})

// The receiving side runs in a child process whose JS thread is blocked while 300 messages of
// 1 MiB arrive; it reports its RSS growth, then (unblocked) how many it got.
const RECEIVER_BLOCKED = `
  const rss = () => process.memoryUsage().rss
  const block = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
  const report = (o) => console.log(JSON.stringify(o))
`

test('a server whose JS thread stops taking messages stops reading at receiveHighWaterBytes; nothing is dropped', { timeout: 120_000 }, async () => {
  const endpoint = tmpEndpoint()
  const child = runNode(`
    const { Server } = require(${JSON.stringify(ROOT)})
    ${RECEIVER_BLOCKED}
    const server = new Server(${JSON.stringify(endpoint)}, { receiveHighWaterBytes: 8 << 20, maxMessageBytes: 2 << 20, encoding: 'buffer' })
    let got = 0
    server.on('message', () => { got++ })
    console.log('bound')
    setTimeout(() => {
      const before = rss()
      block(4000)
      const grew = rss() - before
      const until = Date.now() + 30000
      const wait = () => (got >= 300 || Date.now() > until) ? (report({ grew, got }), server.close()) : setTimeout(wait, 20)
      wait()
    }, 300)
  `, { timeoutMs: 90_000 })
  await sleep(250)
  const client = new Client(endpoint, { maxMessageBytes: 2 << 20, sendHighWaterBytes: 512 << 20, lingerMs: 30_000 })
  const mib = Buffer.alloc(1 << 20, 7)
  for (let i = 0; i < 300; i++) assert.equal(client.send(mib), true)
  const r = await child
  await client.close()
  assert.equal(r.code, 0, r.stderr)
  const m = JSON.parse(r.stdout.trim().split('\n').pop())
  assert.equal(m.got, 300, 'every message arrived once the JS thread was back')
  assert.ok(m.grew < 100 * (1 << 20), `server RSS grew ${(m.grew / (1 << 20)).toFixed(0)} MiB while its JS thread was blocked`)
})

test('a client whose JS thread stops taking pushes stops reading at receiveHighWaterBytes; nothing is dropped', { timeout: 120_000 }, async () => {
  const server = new Server(tmpEndpoint(), { maxMessageBytes: 2 << 20, sendHighWaterBytes: 512 << 20, sendHighWaterMark: 1000, lingerMs: 30_000 })
  try {
    const child = runNode(`
      const { Client } = require(${JSON.stringify(ROOT)})
      ${RECEIVER_BLOCKED}
      const client = new Client(${JSON.stringify(server.endpoint)}, { receiveHighWaterBytes: 8 << 20, maxMessageBytes: 2 << 20 })
      let got = 0
      client.on('message', () => { got++ })
      // An idle client does not keep the process alive.
      const alive = setInterval(() => {}, 1000)
      client.once('ready', () => {
        console.log('ready')
        setTimeout(() => {
          const before = rss()
          block(4000)
          const grew = rss() - before
          const until = Date.now() + 30000
          const wait = () => (got >= 300 || Date.now() > until) ? (report({ grew, got }), clearInterval(alive), client.close()) : setTimeout(wait, 20)
          wait()
        }, 300)
      })
    `, { timeoutMs: 90_000 })
    const deadline = Date.now() + 20_000
    while (server.clients().length === 0 && Date.now() < deadline) await sleep(20)
    const [id] = server.clients()
    const mib = 'y'.repeat(1 << 20)
    await sleep(400)
    for (let i = 0; i < 300; i++) assert.equal(server.sendTo(id, mib), true)
    const r = await child
    assert.equal(r.code, 0, r.stderr)
    const m = JSON.parse(r.stdout.trim().split('\n').pop())
    assert.equal(m.got, 300, 'every push arrived once the JS thread was back')
    assert.ok(m.grew < 100 * (1 << 20), `client RSS grew ${(m.grew / (1 << 20)).toFixed(0)} MiB while its JS thread was blocked`)
  } finally {
    await closesWithin(server, 30_000)
  }
})

test('dropStuckClientAfterMs: a client whose queue stays full is disconnected; the others are untouched', { timeout: 60_000 }, async () => {
  const server = new Server(tmpEndpoint(), { sendHighWaterMark: 1000, dropStuckClientAfterMs: 300 })
  server.route('echo', (raw) => raw)
  const gone = []
  server.on('disconnect', (id) => gone.push(id))
  try {
    const deaf = await deafPeer(server.endpoint, HI)
    try {
      let deadline = Date.now() + 10_000
      while (server.clients().length === 0 && Date.now() < deadline) await sleep(10)
      const [stuck] = server.clients()
      deadline = Date.now() + 20_000
      while (!gone.includes(stuck) && Date.now() < deadline) {
        for (let i = 0; i < 2000; i++) server.sendTo(stuck, 'x'.repeat(100))
        await sleep(20)
      }
      assert.deepEqual(gone, [stuck], 'the stuck client was disconnected')
      assert.equal(await honest(server.endpoint, 3), 3, 'others are served')
    } finally {
      deaf.destroy()
    }
  } finally {
    await closesWithin(server, 10_000)
  }
})
