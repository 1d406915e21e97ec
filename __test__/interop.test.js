'use strict'
// The wire protocol against a plain libzmq ROUTER (pyzmq) that implements only the two-frame
// envelope of docs/PROTOCOL.md, over ipc:// and tcp://127.0.0.1.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')
const readline = require('node:readline')
const { once } = require('node:events')
const { Client, Server } = require('..')
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

// A service still running the version before client sessions acks per-connection counts; a
// newer client must keep working with it (as before: at most once, nothing kept for replay),
// not wait forever for acks of a kind it will never get.
for (const transport of testProtos('ipc', 'tcp')) {
  test(`a zerowire server from before client sessions (count acks, over ${transport}://): every send delivered, nothing kept`, async () => {
    const child = spawn(process.env.PYTHON || 'python3', [path.join(__dirname, 'peers', 'pyzmq_counting_acks.py'), bindAddress(transport)], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      const [line] = await once(readline.createInterface({ input: child.stdout }), 'line')
      const endpoint = line.split(' ')[1]
      const c = new Client(endpoint, { sendHighWaterMark: 500 })
      await once(c, 'ready')
      const TOTAL = 5000
      for (let i = 0; i < TOTAL;) {
        if (c.send(String(i))) i++
        else await once(c, 'drain')
      }
      await waitFor(() => c.stats().delivered === TOTAL, 20_000)
      assert.equal(await c.request('count'), String(TOTAL))
      const s = c.stats()
      assert.deepEqual([s.delivered, s.dropped, s.replayed, s.inFlight], [TOTAL, 0, 0, 0])
      await c.close()
    } finally {
      child.stdin.end()
      child.kill('SIGKILL')
    }
  })
}

// The other way round: a client from before sessions says hello without one and expects its
// sends acked as a count; a newer server numbers them itself and acks as it expects.
const OLD_CLIENT = `
import sys, zmq
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
sock.send_multipart([b"\\x00H\\x01\\x00\\x00\\x00", b'{"pid":1,"ppid":1}'])
corr, body = sock.recv_multipart()[:2]
assert corr == b"\\x00H\\x01\\x00\\x00\\x00" and b"clientId" in body, (corr, body)
for i in range(1000):
    sock.send_multipart([b"", str(i).encode()])
sock.setsockopt(zmq.RCVTIMEO, 20000)
while True:
    corr, body = sock.recv_multipart()[:2]
    if corr[:2] == b"\\x00A":
        assert len(body) == 8, body
        n = int.from_bytes(body, "little")
        if n == 1000:
            print("acked", n, flush=True)
            break
`
for (const transport of testProtos('ipc', 'tcp')) {
  test(`a client from before client sessions (over ${transport}://): its sends handled and acked as a count`, async () => {
    const server = new Server(bindAddress(transport))
    let handled = 0
    server.on('message', (raw, ctx) => {
      handled++
      assert.equal(ctx.redelivered, false)
    })
    const child = spawn(process.env.PYTHON || 'python3', ['-c', OLD_CLIENT, server.endpoint], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      const [code] = await once(child, 'exit')
      assert.equal(code, 0)
      assert.equal(handled, 1000)
    } finally {
      child.kill('SIGKILL')
      await server.close()
    }
  })
}
