'use strict'
// `for await (const msg of client)`: the server's pushes in order, ending when the client
// closes; bounded, so an iterator nobody reads cannot grow memory without end; and while one
// is open the client keeps its process alive, as a socket being read does.

const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const { Client, Server } = require('..')
const { testProtos, bindAddress, runNode, waitFor } = require('./helpers')

async function pair (proto, options) {
  const server = new Server(bindAddress(proto))
  const client = new Client(server.endpoint, options)
  await once(client, 'ready')
  return { server, client, id: server.clients()[0] }
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] for await yields the pushes in order and ends when the client closes`, async () => {
    const { server, client, id } = await pair(proto)
    const got = []
    const loop = (async () => {
      for await (const msg of client) got.push(msg)
      return 'ended'
    })()
    for (let i = 0; i < 200; i++) server.sendTo(id, `push ${i}`)
    await waitFor(() => got.length === 200)
    await client.close()
    assert.equal(await loop, 'ended')
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => `push ${i}`))
    assert.equal(client.listenerCount('message'), 0)
    // A closed client's iterator ends at once.
    for await (const msg of client) assert.fail(`nothing after close, got ${msg}`)
    await server.close()
  })

  test(`[${proto}] break stops listening; two loops each get every push`, async () => {
    const { server, client, id } = await pair(proto)
    const a = []
    const b = []
    const first = (async () => { for await (const m of client) { a.push(m); if (a.length === 3) break } })()
    const second = (async () => { for await (const m of client.messages()) { b.push(m); if (b.length === 5) break } })()
    for (let i = 0; i < 5; i++) server.sendTo(id, String(i))
    await Promise.all([first, second])
    assert.deepEqual(a, ['0', '1', '2'])
    assert.deepEqual(b, ['0', '1', '2', '3', '4'])
    assert.equal(client.listenerCount('message'), 0)
    await client.close()
    await server.close()
  })

  test(`[${proto}] unread pushes are bounded by highWaterMark: the loop gets those, then ERR_ZEROWIRE_OVERFLOW`, async () => {
    const { server, client, id } = await pair(proto)
    assert.throws(() => client.messages({ highWaterMark: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
    const it = client.messages({ highWaterMark: 50 })
    for (let i = 0; i < 1000; i++) server.sendTo(id, `p${i}`)
    await waitFor(() => client.stats().pushes === 1000)
    assert.equal(client.listenerCount('message'), 0, 'the overflowing iterator stopped listening')
    const got = []
    await assert.rejects(async () => { for await (const m of it) got.push(m) }, { code: 'ERR_ZEROWIRE_OVERFLOW' })
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `p${i}`))
    await client.close()
    await server.close()
  })

  test(`[${proto}] an open iterator keeps the process alive until its loop ends`, async () => {
    const server = new Server(bindAddress(proto))
    server.on('connect', (id) => {
      setTimeout(() => { server.sendTo(id, 'one'); server.sendTo(id, 'stop') }, 300)
    })
    // Without the ref the child would exit as soon as its loop awaited: an idle client does not
    // keep a process alive.
    const r = await runNode(`
      const { Client } = require('.')
      ;(async () => {
        for await (const m of new Client(${JSON.stringify(server.endpoint)})) {
          console.log('got', m)
          if (m === 'stop') break
        }
        console.log('loop ended')
      })()
    `)
    await server.close()
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'got one\ngot stop\nloop ended\n')
  })
}
