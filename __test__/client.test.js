'use strict'
// Client behaviour against a real libzmq ROUTER (pyzmq), over ipc:// and tcp://.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('..')
const { testProtos, bindAddress, uniqAddress, startPyRouter, routerCount, runNode, waitFor } = require('./helpers')

// One shared router per transport, for the tests that need nothing of their own.
const routers = {}
test.before(async () => {
  for (const proto of testProtos('ipc', 'tcp')) routers[proto] = await startPyRouter(bindAddress(proto))
})
test.after(() => Promise.all(Object.values(routers).map((r) => r.stop())))

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] fire-and-forget messages arrive complete and in order`, async () => {
    const r = await startPyRouter(bindAddress(proto))
    const ep = r.endpoint
    const c = new Client(ep)
    for (let i = 0; i < 20_000; i++) assert.equal(c.send(`seq:${i}`), true)
    await waitFor(() => c.stats().written === 20_000)
    await c.close()
    const s = await routerCount(ep, 20_000)
    assert.equal(s.count, 20_000)
    assert.equal(s.lastSeq, 19_999)
    assert.equal(s.orderOk, true)
    await r.stop()
  })

  test(`[${proto}] strings keep their bytes (non-ASCII), Buffers and Uint8Arrays are accepted`, async () => {
    const c = new Client(routers[proto].endpoint)
    const text = 'héllo ✓ 🎉 — ünïcödé'
    assert.equal(await c.request(text), 'echo:' + text)
    assert.equal(await c.request(Buffer.from('buf')), 'echo:buf')
    assert.equal(await c.request(new TextEncoder().encode('u8')), 'echo:u8')
    // Large enough to take the zero-copy Buffer path.
    const big = Buffer.alloc(1 << 20, 'z')
    assert.equal((await c.request(big)).length, 5 + (1 << 20))
    assert.equal(await c.request(''), 'echo:')
    // Past 8 Ki units strings are encoded into a buffer of their own, pooled from 64 KiB of room
    // up (3 bytes per unit), and a lone surrogate becomes U+FFFD, as in the short path.
    for (const long of ['a'.repeat(20_000), 'é'.repeat(20_000), 'x'.repeat(9000) + '🎉', 'y'.repeat(9000) + '\ud800', '中'.repeat(30_000), 'z'.repeat(30_000)]) {
      assert.equal(await c.request(long), 'echo:' + long.replace('\ud800', '\ufffd'))
    }
    // Shorter strings are first encoded into what is left of the arena's chunk without being
    // measured (src/ffi.rs, short_string); one that does not fit is measured and encoded again.
    // Lengths that sweep over chunk tails and the 16 KiB attempt, with 1- to 4-byte characters
    // at every offset, all in flight at once: each must come back as sent.
    const pieces = ['a', 'é', '中', '🎉']
    const sweep = Array.from({ length: 400 }, (_, i) => pieces[i % 4].repeat(1 + (i * 37) % 700) + pieces[(i + 1) % 4])
    for (const n of [16 * 1024 - 6, 16 * 1024 - 5, 16 * 1024 - 4, 16 * 1024]) sweep.push('b'.repeat(n), 'c'.repeat(n - 3) + '🎉')
    const echoes = await Promise.all(sweep.map((b) => c.request(b)))
    echoes.forEach((r, i) => assert.ok(r === 'echo:' + sweep[i], `sweep ${i} (${sweep[i].length} units)`))
    // From 64 KiB up their buffers are reused once written: distinct bodies, some in flight at
    // once and some after others were written, must each come back as sent.
    for (let round = 0; round < 3; round++) {
      const bodies = Array.from({ length: 12 }, (_, i) => String.fromCharCode(97 + i).repeat(70_000 + 1000 * round + i))
      const replies = await Promise.all(bodies.map((b) => c.request(b)))
      replies.forEach((r, i) => assert.ok(r === 'echo:' + bodies[i], `round ${round} body ${i}`))
    }
    await c.close()
  })

  test(`[${proto}] many concurrent requests are correlated even when replies come out of order`, async () => {
    // Generous deadline: the Python peer answers 2000 delayed requests with O(n) bookkeeping.
    const c = new Client(routers[proto].endpoint, { requestTimeoutMs: 30_000 })
    const n = 2000
    const delays = Array.from({ length: n }, (_, i) => (i * 7919) % 40)
    const replies = await Promise.all(delays.map((d, i) => c.request(`slow:${d}`).then((r) => [i, r])))
    for (const [i, r] of replies) assert.equal(r, `echo:slow:${delays[i]}`)
    const s = c.stats()
    assert.equal(s.replies, n)
    assert.equal(s.pending, 0)
    await c.close()
  })

  test(`[${proto}] a request without a reply rejects with ETIMEDOUT; its late reply is dropped and counted`, async () => {
    const c = new Client(routers[proto].endpoint, { requestTimeoutMs: 60 })
    const t0 = Date.now()
    await assert.rejects(c.request('silent'), (err) => err.code === 'ETIMEDOUT')
    assert.ok(Date.now() - t0 >= 50)
    // Per-call timeout overrides the default; the reply comes at 300 ms, after the deadline.
    await assert.rejects(c.request('slow:300', { timeoutMs: 30 }), { code: 'ETIMEDOUT' })
    await waitFor(() => c.stats().lateReplies === 1, 3000)
    const s = c.stats()
    assert.equal(s.timeouts, 2)
    assert.equal(s.replies, 0)
    // Other requests are unaffected.
    assert.equal(await c.request('ok'), 'echo:ok')
    await c.close()
  })

  test(`[${proto}] an aborted signal rejects with AbortError; the reply is then counted as late`, async () => {
    const c = new Client(routers[proto].endpoint)
    const pre = new AbortController()
    pre.abort()
    await assert.rejects(c.request('x', { signal: pre.signal }), { name: 'AbortError', code: 'ABORT_ERR' })
    assert.equal(c.stats().requests, 0, 'a pre-aborted request is never sent')

    // Aborted once written: the server still answers, and that answer is counted as late. The
    // abort waits for the write, not for a fixed time (under load the connection alone can take
    // longer than any small delay), and the server holds its answer long enough that the abort
    // cannot lose the race with it even on a starved event loop.
    const ac = new AbortController()
    const p = c.request('slow:2000', { signal: ac.signal })
    await waitFor(() => c.stats().written === 1, 10_000)
    ac.abort(new Error('user left'))
    await assert.rejects(p, (err) => err.name === 'AbortError' && err.cause.message === 'user left')
    await waitFor(() => c.stats().lateReplies === 1, 10_000)
    assert.equal(c.stats().pending, 0)
    assert.equal(c.stats().expiredUnsent, 0)
    assert.equal(await c.request('after'), 'echo:after')
    await c.close()
  })

  test(`[${proto}] requests aborted or timed out while queued are never written and free their room at once`, async () => {
    // No server yet: requests wait in the client's queue. Each that is aborted or times out
    // there is counted in expiredUnsent and leaves the queue then, not when a server comes:
    // dead requests must not hold the high-water mark against live ones during an outage.
    const ep = await uniqAddress(proto)
    const c = new Client(ep, { lingerMs: 0, sendHighWaterMark: 4, requestTimeoutMs: 40 })
    const ac = new AbortController()
    const aborted = c.request('aborted', { signal: ac.signal })
    ac.abort()
    await assert.rejects(aborted, { name: 'AbortError' })
    await waitFor(() => c.stats().expiredUnsent === 1 && c.stats().queued === 0, 10_000)

    // Fill the queue with requests that time out unsent; then it has room again.
    const timedOut = Array.from({ length: 4 }, (_, i) => c.request(`t${i}`))
    await assert.rejects(c.request('over'), { code: 'EFULL' })
    for (const p of timedOut) await assert.rejects(p, { code: 'ETIMEDOUT' })
    await waitFor(() => c.stats().expiredUnsent === 5 && c.stats().queued === 0, 10_000)

    // A server that comes up afterwards gets only what was asked after all that.
    const live = c.request('later', { timeoutMs: 30_000 })
    const r = await startPyRouter(ep)
    try {
      assert.equal(await live, 'echo:later')
      const s = c.stats()
      assert.deepEqual([s.requests, s.requestsRefused, s.written, s.expiredUnsent, s.timeouts, s.lateReplies, s.pending],
        [6, 1, 1, 5, 4, 0, 0])
    } finally {
      await c.close()
      await r.stop()
    }
  })

  test(`[${proto}] a 100 000-message burst from one tick never throws (zeromq.js throws EBUSY at 514)`, async (t) => {
    const r = await startPyRouter(bindAddress(proto))
    const ep = r.endpoint
    const c = new Client(ep, { sendHighWaterMark: 200_000 })
    const body = 'x'.repeat(100)
    let queued = 0
    for (let i = 0; i < 100_000; i++) if (c.send(body)) queued++
    assert.equal(queued, 100_000)
    await waitFor(() => c.stats().written === 100_000, 60_000)
    await c.close()
    assert.equal((await routerCount(ep, 100_000)).count, 100_000)

    // The same scenario with zeromq.js 6, the library users would otherwise pick. It runs in a
    // child process that exits explicitly: zeromq.js keeps the process alive with a send still
    // in progress, which is the very behaviour this project avoids.
    const z = await runNode(`
      const zmq = require('zeromq')
      const dealer = new zmq.Dealer({ linger: 0 })
      dealer.connect(${JSON.stringify(ep)})
      let thrown = null
      for (let i = 0; i < 100000 && !thrown; i++) {
        try { dealer.send(['', ${JSON.stringify(body)}]).catch(() => {}) } catch (err) { thrown = { at: i + 1, code: err.code } }
      }
      console.log(JSON.stringify(thrown))
      process.exit(0)
    `)
    const thrown = JSON.parse(z.stdout)
    assert.equal(thrown?.code, 'EBUSY', 'zeromq.js is expected to throw in this scenario')
    t.diagnostic(`zeromq.js threw ${thrown.code} at send #${thrown.at}`)
    await r.stop()
  })

  test(`[${proto}] the high-water marks refuse (false, counted) instead of throwing; requests get EFULL`, async () => {
    // No server: everything stays queued.
    const c = new Client(await uniqAddress(proto), { sendHighWaterMark: 100, sendHighWaterBytes: 1 << 20, lingerMs: 0 })
    let accepted = 0
    let refused = 0
    for (let i = 0; i < 150; i++) (c.send('m') ? accepted++ : refused++)
    assert.deepEqual([accepted, refused], [100, 50])
    await assert.rejects(c.request('q'), { code: 'EFULL' })
    const s = c.stats()
    // Every send() call is counted; the refused ones end there.
    assert.deepEqual([s.sent, s.refused, s.inFlight], [150, 50, 100])
    assert.equal(s.requestsRefused, 1)
    assert.equal(s.queued, 100)
    await c.close()

    const b = new Client(await uniqAddress(proto), { sendHighWaterBytes: 1000, lingerMs: 0 })
    assert.equal(b.send('a'.repeat(600)), true)
    assert.equal(b.send('a'.repeat(600)), false, 'over the byte mark')
    assert.equal(b.send('a'.repeat(300)), true)
    assert.equal(b.stats().queuedBytes, 900)
    await b.close()
  })

  test(`[${proto}] bad arguments throw a clear error with a code and lose nothing else`, async () => {
    const r = await startPyRouter(bindAddress(proto))
    const ep = r.endpoint
    const c = new Client(ep, { maxMessageBytes: 1000 })
    c.send('seq:0')
    for (const bad of [123, null, undefined, {}, [], true, new Uint16Array(2), Symbol('s')]) {
      assert.throws(() => c.send(bad), (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE')
    }
    c.send('seq:1')
    assert.throws(() => c.send('x'.repeat(1001)), (err) => err instanceof RangeError && err.code === 'EMSGSIZE')
    assert.throws(() => c.send(Buffer.alloc(1001)), { code: 'EMSGSIZE' })
    // 400 three-byte characters: 400 UTF-16 units but 1200 UTF-8 bytes.
    assert.throws(() => c.send('✓'.repeat(400)), { code: 'EMSGSIZE' })
    c.send('seq:2')
    await assert.rejects(c.request(42), { code: 'ERR_INVALID_ARG_TYPE' })
    await assert.rejects(c.request('x'.repeat(2000)), { code: 'EMSGSIZE' })
    await assert.rejects(c.request('x', { timeoutMs: -1 }), { code: 'ERR_OUT_OF_RANGE' })
    await assert.rejects(c.request('x', { signal: 'no' }), { code: 'ERR_INVALID_ARG_TYPE' })
    await assert.rejects(c.request('x', 5), { code: 'ERR_INVALID_ARG_TYPE' })
    assert.equal(await c.request('fine'), 'echo:fine')
    await waitFor(() => c.stats().written === 4)
    await c.close()
    const s = await routerCount(ep, 3)
    assert.equal(s.count, 3)
    assert.equal(s.orderOk, true)
    await r.stop()

    assert.throws(() => new Client(5), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
    assert.throws(() => new Client('http://x'), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
    assert.throws(() => new Client('ipc://' + '/x'.repeat(60)), { code: 'ERR_INVALID_ARG_VALUE' })
    assert.throws(() => new Client(ep, 'x'), { code: 'ERR_INVALID_ARG_TYPE' })
    assert.throws(() => new Client(ep, { lingerMs: 'long' }), { code: 'ERR_INVALID_ARG_TYPE' })
    assert.throws(() => new Client(ep, { sendHighWaterMark: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    assert.throws(() => new Client(ep, { requestTimeoutMs: 1.5 }), { code: 'ERR_OUT_OF_RANGE' })
  })

  test(`[${proto}] close() drains queued sends, then rejects pending requests with ECLOSED`, async () => {
    const r = await startPyRouter(bindAddress(proto))
    const ep = r.endpoint
    const c = new Client(ep)
    for (let i = 0; i < 30_000; i++) c.send(`seq:${i}`)
    const pending = c.request('silent')
    const closing = c.close()
    assert.equal(c.close(), closing, 'close() is idempotent')
    assert.throws(() => c.send('late'), { code: 'ECLOSED' })
    await assert.rejects(c.request('late'), { code: 'ECLOSED' })
    await closing
    await assert.rejects(pending, { code: 'ECLOSED' })
    const s = c.stats()
    assert.equal(s.written, 30_001)
    assert.equal(s.dropped, 0)
    assert.equal(s.queued, 0)
    // A plain ZeroMQ peer cannot confirm: what close() saw answered counts as delivered.
    assert.deepEqual([s.sent, s.delivered, s.inFlight], [30_000, 30_000, 0])
    assert.equal((await routerCount(ep, 30_000)).count, 30_000)
    await r.stop()
  })

  test(`[${proto}] close() with no server resolves within lingerMs and counts what it dropped`, async () => {
    const c = new Client(await uniqAddress(proto), { lingerMs: 150 })
    for (let i = 0; i < 10; i++) c.send('never')
    const req = c.request('never')
    const t0 = Date.now()
    await c.close()
    const took = Date.now() - t0
    assert.ok(took >= 140 && took < 2000, `took ${took} ms`)
    await assert.rejects(req, { code: 'ECLOSED' })
    const s = c.stats()
    assert.deepEqual([s.dropped, s.droppedClosed, s.queued, s.written], [10, 10, 0, 0])
    assert.equal(s.sent, s.delivered + s.refused + s.dropped)
  })

  test(`[${proto}] messages sent before the server exists are delivered once it binds`, async () => {
    const ep = await uniqAddress(proto)
    const c = new Client(ep, { reconnectIntervalMs: 20 })
    for (let i = 0; i < 100; i++) c.send(`seq:${i}`)
    const reply = c.request('hello')
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(c.stats().connected, false)
    const r = await startPyRouter(ep)
    assert.equal(await reply, 'echo:hello')
    await c.close()
    const s = await routerCount(ep, 100)
    assert.equal(s.count, 100)
    assert.equal(s.orderOk, true)
    await r.stop()
  })
}
