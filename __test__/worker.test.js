'use strict'
// Clients and servers created in worker threads survive the worker being terminated mid-burst:
// no crash, and their engine threads end with the worker (counted from /proc).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Worker } = require('node:worker_threads')
const { once } = require('node:events')
const { ROOT, testProtos, bindAddress } = require('./helpers')
const { Server } = require('..')

const threads = () => fs.readdirSync('/proc/self/task').length

async function settle (ms = 200) {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] 20 workers terminated mid-burst: no crash, no leaked threads`, { skip: !fs.existsSync('/proc/self/task') && 'needs /proc' }, async () => {
    const sink = new Server(bindAddress(proto))
    let received = 0
    sink.on('message', () => { received++ })
    await settle()
    const before = threads()
    const source = `
      const { parentPort, workerData } = require('node:worker_threads')
      const { Client, Server } = require(${JSON.stringify(ROOT)})
      const client = new Client(workerData.sink, { lingerMs: 200 })
      const own = new Server(workerData.own)
      own.route('x', () => 'y')
      const peer = new Client(own.endpoint)
      parentPort.postMessage('started')
      const body = 'w'.repeat(512)
      const burst = () => {
        for (let i = 0; i < 300; i++) { client.send(body); peer.send('{"type":"x"}') }
        peer.request('{"type":"x"}').catch(() => {})
        setTimeout(burst, 1)
      }
      burst()
    `
    const workers = Array.from({ length: 20 }, () => new Worker(source, {
      eval: true,
      workerData: { sink: sink.endpoint, own: bindAddress(proto) },
    }))
    await Promise.all(workers.map((w) => once(w, 'message')))
    const during = threads()
    assert.ok(during >= before + 20 * 3, `engine threads run in the workers (${before} → ${during})`)
    await settle(100)
    await Promise.all(workers.map((w) => w.terminate()))
    // Each engine thread ends inside its worker's teardown (bounded by lingerMs).
    let after = threads()
    for (let i = 0; i < 50 && after > before; i++) {
      await settle(100)
      after = threads()
    }
    assert.ok(after <= before, `threads before ${before}, during ${during}, after ${after}`)
    assert.ok(received > 0)
    await sink.close()
  })

  test(`[${proto}] a worker that exits on its own closes its client and server cleanly`, async () => {
    const worker = new Worker(`
      const { Client, Server } = require(${JSON.stringify(ROOT)})
      const s = new Server(${JSON.stringify(bindAddress(proto))})
      s.route('q', () => 'a')
      const c = new Client(s.endpoint)
      c.request('{"type":"q"}').then(async (r) => {
        if (r !== 'a') throw new Error(r)
        await c.close()
        await s.close()
      })
    `, { eval: true })
    const [code] = await once(worker, 'exit')
    assert.equal(code, 0)
  })
}
