'use strict'
// Large messages arrive intact both ways, and a Buffer a handler keeps stays intact while later
// large messages come in. Frame bodies of 128 KiB and more are read into memory of their own,
// which goes back to a pool for the next large frame once the Buffer holding it is collected;
// a kept Buffer must never be handed out again.

const test = require('node:test')
const assert = require('node:assert/strict')
const v8 = require('node:v8')
const vm = require('node:vm')
const { Client, Server } = require('..')
const { testProtos, bindAddress, waitFor } = require('./helpers')

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const KiB = 1024
/** A routable message of exactly `size` bytes whose content depends on `seed`. */
function message (size, seed) {
  const head = Buffer.from(`{"type":"big","seed":${seed},"pad":"`)
  const tail = Buffer.from('"}')
  const body = Buffer.alloc(size)
  head.copy(body)
  for (let i = head.length; i < size - tail.length; i++) body[i] = 97 + ((i * 31 + seed * 7) % 26)
  tail.copy(body, size - tail.length)
  return body
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] large messages arrive intact both ways, and kept Buffers stay intact while more arrive`, async (t) => {
    const server = new Server(bindAddress(proto), { encoding: 'buffer', maxMessageBytes: 8 * 1024 * KiB })
    const kept = []
    let dropped = 0
    server.route('big', (raw, ctx) => {
      // Every third one is kept; the others are let go (and collected below).
      const seed = Number(/"seed":(\d+)/.exec(raw.subarray(0, 40).toString())[1])
      if (seed % 3 === 0) kept.push({ seed, raw })
      else dropped++
      if (ctx.isRequest) return raw
    })
    const client = new Client(server.endpoint, { maxMessageBytes: 8 * 1024 * KiB, sendHighWaterBytes: 256 * 1024 * KiB })
    t.after(async () => { await client.close(); await server.close() })

    const sizes = [128 * KiB - 1, 128 * KiB, 128 * KiB + 1, 300 * KiB, 1024 * KiB + 3, 3 * 1024 * KiB]
    const sent = new Map()
    let seed = 0
    for (let round = 0; round < 6; round++) {
      // Requests, several at once: the replies are large frames on the client side too.
      const asked = sizes.map((size) => {
        const m = message(size, seed++)
        sent.set(seed - 1, m)
        return client.request(m).then((reply) => assert.ok(reply === m.toString('latin1'), `reply to a ${size}-byte request differs`))
      })
      // And fire-and-forget ones between them.
      for (const size of sizes) {
        const m = message(size, seed++)
        sent.set(seed - 1, m)
        assert.equal(client.send(m), true)
      }
      await Promise.all(asked)
      // Buffers let go are collected now, so their memory is read into again next round.
      gc()
    }
    await waitFor(() => kept.length + dropped === seed, 30_000)
    assert.equal(kept.length, seed / 3)
    for (const { seed, raw } of kept) {
      assert.ok(raw.equals(sent.get(seed)), `the kept message ${seed} (${raw.length} bytes) changed`)
    }
  })
}

/** A routable ASCII message of exactly `size` bytes, as a string. */
function asciiMessage (size, seed) {
  return message(size, seed).toString('latin1')
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] large messages as strings arrive intact, and kept strings stay intact while more arrive`, async (t) => {
    const server = new Server(bindAddress(proto), { maxMessageBytes: 8 * 1024 * KiB })
    const kept = []
    let dropped = 0
    server.route('big', (raw, ctx) => {
      const seed = Number(/"seed":(\d+)/.exec(raw.slice(0, 40))[1])
      if (seed % 3 === 0) kept.push({ seed, raw })
      else dropped++
      if (ctx.isRequest) return raw
      // Pushed back to the sender: the client keeps every push.
      assert.equal(server.sendTo(ctx.clientId, raw), true)
    })
    const client = new Client(server.endpoint, { maxMessageBytes: 8 * 1024 * KiB, sendHighWaterBytes: 256 * 1024 * KiB })
    const pushes = []
    client.on('message', (raw) => pushes.push(raw))
    t.after(async () => { await client.close(); await server.close() })

    const sizes = [128 * KiB - 1, 128 * KiB, 300 * KiB, 1024 * KiB + 3]
    const sent = new Map()
    const replies = []
    let seed = 0
    let fired = 0
    for (let round = 0; round < 6; round++) {
      const asked = sizes.map((size) => {
        const m = asciiMessage(size, seed++)
        sent.set(seed - 1, m)
        return client.request(m).then((reply) => replies.push({ m, reply }))
      })
      for (const size of sizes) {
        const m = asciiMessage(size, seed++)
        sent.set(seed - 1, m)
        assert.equal(client.send(m), true)
        fired++
      }
      await Promise.all(asked)
      gc()
    }
    // Not ASCII: decoded as UTF-8 like any other body.
    const accents = `{"type":"big","seed":${seed++},"pad":"${'é€'.repeat(100 * KiB)}"}`
    sent.set(seed - 1, accents)
    assert.equal(await client.request(accents), accents)
    await waitFor(() => kept.length + dropped === seed && pushes.length === fired, 30_000)
    gc()
    assert.equal(kept.length, Math.ceil(seed / 3))
    for (const { seed, raw } of kept) assert.ok(raw === sent.get(seed), `the kept message ${seed} (${raw.length} characters) changed`)
    for (const { m, reply } of replies) assert.ok(reply === m, `a kept ${m.length}-byte reply changed`)
    const expected = [...sent.values()].filter((m) => !m.includes('é'))
    for (const raw of pushes) assert.ok(expected.includes(raw), `a kept ${raw.length}-byte push changed`)
  })
}

// Where Node-API 10 has external strings, a long ASCII body becomes a string over the received
// memory itself: V8 copies nothing into its large-object space (a copy would add the bodies'
// size there).
const externalStrings = Number(process.versions.napi) >= 10
test('long ASCII bodies become strings without a copy into the JS heap', { skip: !externalStrings && 'this Node has no Node-API 10' }, async (t) => {
  const server = new Server(bindAddress('ipc'), { maxMessageBytes: 4 * 1024 * KiB })
  const kept = []
  server.route('big', (raw) => { kept.push(raw) })
  const client = new Client(server.endpoint, { maxMessageBytes: 4 * 1024 * KiB })
  t.after(async () => { await client.close(); await server.close() })
  const bodies = Array.from({ length: 8 }, (_, i) => message(1024 * KiB, i))
  const largeObjects = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'large_object_space').space_used_size
  gc()
  const before = largeObjects()
  for (const b of bodies) assert.equal(client.send(b), true)
  await waitFor(() => kept.length === bodies.length, 10_000)
  gc()
  const grown = largeObjects() - before
  for (let i = 0; i < bodies.length; i++) assert.ok(Buffer.from(kept[i], 'latin1').equals(bodies[i]), `body ${i} differs`)
  assert.ok(grown < 1024 * KiB, `the large-object space grew by ${grown} bytes for ${bodies.length} bodies of 1 MiB`)
})
