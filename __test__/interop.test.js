'use strict'
// The wire protocol against a plain libzmq ROUTER (pyzmq) that implements only the two-frame
// envelope of docs/PROTOCOL.md, over ipc:// and tcp://127.0.0.1.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Client } = require('..')
const { testProtos, bindAddress, startPyRouter, routerCount, waitFor } = require('./helpers')

for (const transport of testProtos('ipc', 'tcp')) {
  test(`pyzmq ROUTER over ${transport}://: fire-and-forget counted, requests answered`, async () => {
    const router = await startPyRouter(bindAddress(transport))
    const ep = router.endpoint
    assert.ok(ep.startsWith(transport + '://'))
    const c = new Client(ep)
    for (let i = 0; i < 10_000; i++) c.send(`seq:${i}`)
    const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => c.request(`q${i}`)))
    replies.forEach((r, i) => assert.equal(r, `echo:q${i}`))
    // A large message in both directions.
    const big = 'b'.repeat(4 << 20)
    assert.equal((await c.request(big)).length, big.length + 5)
    // Sizes on both sides of the 8 KiB line where frames stop being copied into the write
    // buffer (vendor/zeromq/PATCHES.md), in flight together so that one vectored write mixes
    // them; each echo must come back byte for byte.
    const sizes = [0, 255, 256, 8191, 8192, 8193, 65_536, 300_001]
    const bodies = sizes.flatMap((n, i) => [0, 1].map((k) => Array.from({ length: n }, (_, j) => String.fromCharCode(97 + ((i + j + k) % 26))).join('')))
    const echoes = await Promise.all(bodies.map((b) => c.request(b)))
    echoes.forEach((r, i) => assert.ok(r === 'echo:' + bodies[i], `size ${bodies[i].length}`))
    await waitFor(() => c.stats().written === 10_501 + bodies.length)
    await c.close()
    const s = await routerCount(ep, 10_000)
    assert.equal(s.count, 10_000)
    assert.equal(s.orderOk, true)
    await router.stop()
  })
}
