'use strict'
// A Buffer handed to send() may be detached (transferred to a worker or by structuredClone) or
// shrunk (a resizable ArrayBuffer) right after the call, while the engine thread has not
// written it yet. The wire must carry exactly the bytes the caller passed, never whatever
// memory took their place, and nothing may be lost or dropped for it.

const test = require('node:test')
const assert = require('node:assert/strict')
const v8 = require('node:v8')
const vm = require('node:vm')
const { Worker } = require('node:worker_threads')
const { Client, Server } = require('..')
const { bindAddress, testProtos, tmpEndpoint } = require('./helpers')

/** `size` bytes of a pattern unique to message `i`. */
function pattern (size, i) {
  const b = Buffer.alloc(size)
  for (let k = 0; k < size; k += 4) b.writeUInt32LE((k * 2654435761 + i) >>> 0, k)
  return b
}

async function roundTrip (endpoint, size, count, spoil) {
  const server = new Server(endpoint, { encoding: 'buffer', maxMessageBytes: 2 << 20 })
  const seen = []
  server.on('message', (raw) => { seen.push(Buffer.from(raw)) })
  server.route('barrier', () => 'ok')
  const client = new Client(server.endpoint, { maxMessageBytes: 2 << 20 })
  try {
    for (let i = 0; i < count; i++) {
      const sent = await spoil(pattern(size, i), (u8) => client.send(u8))
      assert.equal(sent, true)
    }
    await client.request('{"type":"barrier"}')
    const deadline = Date.now() + 20_000
    while (seen.length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(seen.length, count, 'every message arrived')
    for (let i = 0; i < count; i++) assert.ok(seen[i].equals(pattern(size, i)), `message ${i} is the bytes that were passed`)
    const s = client.stats()
    assert.equal(s.droppedPeerLost, 0)
    assert.equal(s.disconnects, 0)
  } finally {
    await client.close()
    await server.close()
  }
}

v8.setFlagsFromString('--expose-gc')
/** Collects now, so a transferred-away buffer's memory is freed (and reused) at once. */
const gc = vm.runInNewContext('gc')

/** Fills memory just freed with something else, as the next allocations of an app would. */
function churn (size) {
  for (let i = 0; i < 4; i++) Buffer.alloc(size, 0xee)
}

/** A fresh ArrayBuffer holding `bytes`, as its own allocation (so it can be detached). */
function own (bytes, options) {
  const ab = new ArrayBuffer(bytes.length, options)
  const u8 = new Uint8Array(ab)
  u8.set(bytes)
  return u8
}

for (const transport of testProtos('ipc', 'tcp')) {
  const endpoint = () => bindAddress(transport)
  for (const size of [64 * 1024, 1 << 20]) {
    test(`[${transport}] ${size / 1024} KiB sent, then its ArrayBuffer transferred away: the bytes passed arrive`, () =>
      roundTrip(endpoint(), size, 20, async (bytes, send) => {
        const u8 = own(bytes)
        const sent = send(u8)
        // Transferred and dropped: V8 frees the memory once the clone is collected.
        structuredClone(u8.buffer, { transfer: [u8.buffer] })
        assert.equal(u8.byteLength, 0)
        gc()
        churn(size)
        return sent
      }))
  }

  test(`[${transport}] a resizable ArrayBuffer shrunk to 0 right after send(): the bytes passed arrive`, () =>
    roundTrip(endpoint(), 1 << 20, 10, async (bytes, send) => {
      const u8 = own(bytes, { maxByteLength: 1 << 20 })
      const sent = send(u8)
      u8.buffer.resize(0)
      churn(1 << 20)
      return sent
    }))

  test(`[${transport}] a buffer posted to a worker that exits right after send(): the bytes passed arrive`, () =>
    roundTrip(endpoint(), 256 * 1024, 5, async (bytes, send) => {
      const u8 = own(bytes)
      const sent = send(u8)
      const worker = new Worker('require("node:worker_threads").parentPort.once("message", () => process.exit(0))', { eval: true })
      worker.postMessage(u8.buffer, [u8.buffer])
      await new Promise((resolve) => worker.once('exit', resolve))
      churn(256 * 1024)
      return sent
    }))
}

test('a SharedArrayBuffer view (the zero-copy case) arrives intact', () =>
  roundTrip(tmpEndpoint(), 1 << 20, 10, async (bytes, send) => {
    const u8 = new Uint8Array(new SharedArrayBuffer(bytes.length))
    u8.set(bytes)
    return send(u8)
  }))
