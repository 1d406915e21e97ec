'use strict'
// Process-level behaviour: what keeps the process alive, and exiting with an open client,
// over ipc:// and tcp://.
// Each case runs in a child Node process so the test sees the real exit.

const test = require('node:test')
const assert = require('node:assert/strict')
const { ROOT, testProtos, bindAddress, uniqAddress, startPyRouter, runNode, routerCount } = require('./helpers')

const lib = JSON.stringify(ROOT)

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] an idle client does not keep the process alive`, async () => {
    const r = await runNode(`
      const { Client } = require(${lib})
      const c = new Client(${JSON.stringify(await uniqAddress(proto))})
      console.log('created', c.stats().sent)
    `)
    assert.equal(r.timedOut, false)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.signal, null)
    assert.match(r.stdout, /created 0/)
    assert.ok(r.ms < 5000, `took ${r.ms} ms`)
  })

  test(`[${proto}] a pending request keeps the process alive until its reply`, async () => {
    const router = await startPyRouter(bindAddress(proto))
    const r = await runNode(`
      const { Client } = require(${lib})
      const c = new Client(${JSON.stringify(router.endpoint)})
      c.request('slow:400').then((reply) => console.log('reply', reply))
    `)
    await router.stop()
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /reply echo:slow:400/)
    assert.ok(r.ms >= 400, `exited after ${r.ms} ms, before the reply could come`)
  })

  test(`[${proto}] a pending request that times out lets the process exit`, async () => {
    const r = await runNode(`
      const { Client } = require(${lib})
      const c = new Client(${JSON.stringify(await uniqAddress(proto))}, { lingerMs: 0 })
      c.request('x', { timeoutMs: 200 }).catch((err) => console.log('rejected', err.code))
    `)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /rejected ETIMEDOUT/)
  })

  test(`[${proto}] natural exit without close() flushes what was queued (bounded by lingerMs)`, async () => {
    const router = await startPyRouter(bindAddress(proto))
    const ep = router.endpoint
    const r = await runNode(`
      const { Client } = require(${lib})
      const c = new Client(${JSON.stringify(ep)})
      for (let i = 0; i < 5000; i++) c.send('seq:' + i)
    `)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.signal, null)
    const s = await routerCount(ep, 5000)
    assert.equal(s.count, 5000)
    assert.equal(s.orderOk, true)
    await router.stop()
  })

  test(`[${proto}] process.exit() with queued messages and no server exits within lingerMs`, async () => {
    const r = await runNode(`
      const { Client } = require(${lib})
      const c = new Client(${JSON.stringify(await uniqAddress(proto))}, { lingerMs: 300 })
      for (let i = 0; i < 1000; i++) c.send('never delivered')
      c.request('never answered').catch(() => {})
      process.exit(3)
    `)
    assert.equal(r.timedOut, false)
    assert.equal(r.code, 3, r.stderr)
    assert.equal(r.signal, null)
    assert.ok(r.ms < 5000, `took ${r.ms} ms`)
  })

  test(`[${proto}] process.exit() right after sending delivers to a live server`, async () => {
    const router = await startPyRouter(bindAddress(proto))
    const ep = router.endpoint
    const r = await runNode(`
      const { Client } = require(${lib})
      const c = new Client(${JSON.stringify(ep)})
      for (let i = 0; i < 2000; i++) c.send('seq:' + i)
      process.exit(0)
    `)
    assert.equal(r.code, 0, r.stderr)
    assert.equal((await routerCount(ep, 2000)).count, 2000)
    await router.stop()
  })

  test(`[${proto}] many clients created and abandoned in a process exit cleanly`, async () => {
    const r = await runNode(`
      const { Client } = require(${lib})
      const clients = []
      for (let i = 0; i < 50; i++) {
        const c = new Client(${JSON.stringify(await uniqAddress(proto))}, { lingerMs: 50 })
        c.send('x')
        clients.push(c)
      }
      Promise.all(clients.slice(0, 25).map((c) => c.close())).then(() => console.log('half closed'))
    `)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.signal, null)
    assert.match(r.stdout, /half closed/)
  })
}
