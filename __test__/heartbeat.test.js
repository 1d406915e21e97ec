'use strict'
// Heartbeats: a hung server or client (SIGSTOP: the socket stays open, nothing answers) is
// detected on the other side; a dead server's in-flight requests fail at once.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const { Client, Server } = require('..')
const { ROOT, testProtos, bindAddress, uniqAddress, waitFor } = require('./helpers')

/** A zerowire Server in a child process; 'slow' requests are never answered. */
async function childServer (endpoint) {
  const child = spawn(process.execPath, ['-e', `
    const { Server } = require(${JSON.stringify(ROOT)})
    const s = new Server(${JSON.stringify(endpoint)})
    s.route('echo', (raw) => raw)
    s.route('slow', () => new Promise(() => {}))
    console.log('bound')
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  await once(child.stdout, 'data')
  return child
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] a hung server is detected by the heartbeat; its in-flight request gets ECONNRESET`, async () => {
    const ep = await uniqAddress(proto)
    const server = await childServer(ep)
    const c = new Client(ep, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 300, requestTimeoutMs: 10_000 })
    await once(c, 'ready')
    assert.equal(await c.request('{"type":"echo"}'), '{"type":"echo"}')
    const inflight = c.request('{"type":"slow"}')
    await new Promise((resolve) => setTimeout(resolve, 50))
    server.kill('SIGSTOP')
    const t0 = Date.now()
    await once(c, 'disconnect')
    const took = Date.now() - t0
    assert.ok(took < 2000, `noticed after ${took} ms`)
    await assert.rejects(inflight, { code: 'ECONNRESET' })
    assert.equal(c.stats().heartbeatTimeouts, 1)
    assert.equal(c.isReady, false)
    // When the server wakes up the client finds it again.
    server.kill('SIGCONT')
    await once(c, 'ready')
    assert.equal(await c.request('{"type":"echo"}'), '{"type":"echo"}')
    await c.close()
    server.kill('SIGKILL')
  })

  test(`[${proto}] a killed server fails in-flight requests at once, not at their timeout`, async () => {
    const ep = await uniqAddress(proto)
    const server = await childServer(ep)
    const c = new Client(ep, { requestTimeoutMs: 30_000 })
    await once(c, 'ready')
    const inflight = c.request('{"type":"slow"}')
    await new Promise((resolve) => setTimeout(resolve, 50))
    const t0 = Date.now()
    server.kill('SIGKILL')
    await assert.rejects(inflight, { code: 'ECONNRESET' })
    assert.ok(Date.now() - t0 < 2000)
    assert.equal(c.stats().resets, 1)
    await c.close()
  })

  test(`[${proto}] a hung client is dropped by the server with reason timeout`, async () => {
    const server = new Server(bindAddress(proto), { heartbeatTimeoutMs: 300 })
    const events = []
    server.on('connect', (id) => events.push(['connect', id]))
    server.on('disconnect', (id, reason) => events.push(['disconnect', id, reason]))
    const child = spawn(process.execPath, ['-e', `
      const { Client } = require(${JSON.stringify(ROOT)})
      const c = new Client(${JSON.stringify(server.endpoint)}, { heartbeatIntervalMs: 100 })
      setInterval(() => {}, 1000)
      c.on('ready', () => console.log('ready'))
    `], { stdio: ['ignore', 'pipe', 'inherit'] })
    await once(child.stdout, 'data')
    // Alive and pinging: no timeout while it runs.
    await new Promise((resolve) => setTimeout(resolve, 600))
    assert.equal(events.length, 1)
    child.kill('SIGSTOP')
    await waitFor(() => events.length === 2, 3000)
    assert.deepEqual(events[1], ['disconnect', events[0][1], 'timeout'])
    assert.deepEqual(server.clients(), [])
    child.kill('SIGKILL')
    await server.close()
  })
}
