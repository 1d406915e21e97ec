'use strict'
// Memory a burst passed through goes back to the OS once the engine is quiet (core/src/trim.rs):
// glibc keeps freed memory in its arenas, so without a trim a client that once queued 150 MiB
// stays that large. Over ipc:// only: the memory trimmed is the queue's and the engine's, the
// same whatever the transport, and the 190 MiB burst is among the slowest tests of the suite.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('..')
const { tmpEndpoint, startPyRouter, waitFor } = require('./helpers')

const glibc = process.platform === 'linux' && Boolean(process.report.getReport().header.glibcVersionRuntime)
const rssMiB = () => process.memoryUsage().rss / 2 ** 20

test('a burst written, then a quiet second: the client gives the memory back', { skip: !glibc && 'malloc_trim is glibc only' }, async (t) => {
  const router = await startPyRouter(tmpEndpoint())
  const c = new Client(router.endpoint, { sendHighWaterMark: 200_000, sendHighWaterBytes: 512 * 2 ** 20 })
  t.after(async () => { await c.close(); await router.stop() })
  await waitFor(() => c.stats().connected)
  // About 190 MiB through the queue: 150 000 short strings and 40 long ones, all in one tick.
  const small = 'x'.repeat(1024)
  const big = 'y'.repeat(1 << 20)
  for (let i = 0; i < 150_000; i++) assert.equal(c.send(small), true)
  for (let i = 0; i < 40; i++) assert.equal(c.send(big), true)
  await waitFor(() => c.stats().queued === 0, 60_000)
  const drained = rssMiB()
  // Once quiet for a second the engine trims; the free pages leave within a moment after.
  let now = drained
  await waitFor(() => (now = rssMiB()) < drained - 60, 10_000).catch(() => {})
  assert.ok(now < drained - 60, `RSS ${drained.toFixed(0)} MiB after the burst, still ${now.toFixed(0)} MiB after the quiet time`)
  assert.equal(c.stats().sent, 150_040)
})
