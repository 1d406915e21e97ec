'use strict'
// Client metrics: latency histograms kept in Rust, and the 'slow' event.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { Client, Server } = require('..')
const { testProtos, bindAddress } = require('./helpers')

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] stats().latency has request round trips and queue waits; slowRequestMs emits slow`, async () => {
    const server = new Server(bindAddress(proto))
    server.route('fast', () => 'f')
    // libuv's timers run off the loop's cached clock, so a timer may fire a little early:
    // the route sleeps 100 ms and the checks below ask for 80.
    server.route('slow', () => new Promise((resolve) => setTimeout(() => resolve('s'), 100)))
    const c = new Client(server.endpoint, { slowRequestMs: 40 })
    const slow = []
    c.on('slow', (info) => slow.push(info))
    for (let i = 0; i < 5; i++) assert.equal(await c.request('{"type":"fast"}'), 'f')
    const raw = '{"type":"slow","n":1}'
    assert.equal(await c.request(raw), 's')
    for (let i = 0; i < 10; i++) c.send('{"type":"fast"}')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const { request, queueWait } = c.stats().latency
    assert.equal(request.count, 6)
    assert.ok(request.p50 <= request.p90 && request.p90 <= request.p99 && request.p99 <= request.max)
    // The slow route sleeps (about) 100 ms, so the slowest round trip is at least 80.
    assert.ok(request.max >= 80_000, `max ${request.max} µs`)
    assert.equal(queueWait.count, 16)
    assert.equal(slow.length, 1, 'only the slow request crossed slowRequestMs')
    assert.ok(slow[0].ms >= 80, `slow after ${slow[0].ms} ms`)
    assert.equal(slow[0].request, raw)
    assert.throws(() => new Client(server.endpoint, { slowRequestMs: -1 }), { code: 'ERR_OUT_OF_RANGE' })
    await c.close()
    const s = server.stats().latency
    assert.ok(s.service.count >= 6 && s.queueWait.count >= 16)
    await server.close()
  })
}
