'use strict'
// 'drain': after a refused send() or request(), the client says when there is room again (the
// queue is down to half its high-water marks), once per refusal, as a socket does.

const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const { setTimeout: sleep } = require('node:timers/promises')
const { Client, Server } = require('..')
const { testProtos, bindAddress, uniqAddress, waitFor } = require('./helpers')

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] a refusal is followed by one drain once the queue can move again`, async () => {
    const ep = await uniqAddress(proto)
    // No server yet: the queue fills and cannot move.
    const c = new Client(ep, { sendHighWaterMark: 100, reconnectIntervalMs: 20 })
    let drains = 0
    c.on('drain', () => drains++)
    let accepted = 0
    while (c.send(`m${accepted}`)) accepted++
    assert.equal(accepted, 100)
    await assert.rejects(c.request('r'), { code: 'EFULL' })
    await sleep(200)
    assert.equal(drains, 0, 'no drain while nothing can be written')

    let received = 0
    const server = new Server(ep)
    server.on('message', () => { received++ })
    try {
      await waitFor(() => drains === 1, 5000)
      assert.ok(c.send('after'), 'send() accepts again after drain')
      await waitFor(() => received === 101, 5000)
      // Once per refusal episode: no refusal since, so no second drain.
      await sleep(100)
      assert.equal(drains, 1)
    } finally {
      await c.close()
      await server.close()
    }
  })

  test(`[${proto}] a producer that waits for drain instead of polling delivers everything`, async () => {
    const server = new Server(bindAddress(proto), { encoding: 'buffer' })
    let received = 0
    server.on('message', () => { received++ })
    const c = new Client(server.endpoint, { sendHighWaterMark: 500 })
    const total = 100_000
    let waits = 0
    try {
      for (let i = 0; i < total; i++) {
        // Every refusal must be followed by a drain, or this loop would hang (the test times out).
        while (!c.send('x'.repeat(64))) {
          waits++
          await once(c, 'drain')
        }
      }
      await waitFor(() => received === total, 30_000)
      assert.ok(waits > 0, 'the queue filled at least once')
      const s = c.stats()
      assert.equal(s.sent, total + s.refused)
    } finally {
      await c.close()
      await server.close()
    }
  })

  test(`[${proto}] the server's pushes too: refused at the byte mark, then 'drain'`, async () => {
    const server = new Server(bindAddress(proto), { sendHighWaterBytes: 1000 })
    const c = new Client(server.endpoint)
    const got = []
    c.on('message', (m) => got.push(m.length))
    try {
      const [id] = await once(server, 'connect')
      const body = 'y'.repeat(600)
      let drained = false
      server.once('drain', () => { drained = true })
      // The first is staged until the end of the tick, and counts against the mark.
      assert.equal(server.sendTo(id, body), true)
      assert.equal(server.sendTo(id, body), false)
      await waitFor(() => drained, 5000)
      assert.equal(server.sendTo(id, body), true)
      await waitFor(() => got.length === 2, 5000)
      assert.deepEqual(got, [600, 600])
    } finally {
      await c.close()
      await server.close()
    }
  })
}
