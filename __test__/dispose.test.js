'use strict'
// Client and Server are async disposables (`await using`): Symbol.asyncDispose is close(),
// with its drain. Node 20 cannot parse `await using`, so the tests call the method itself.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Client, Server } = require('..')
const { testProtos, bindAddress, waitFor } = require('./helpers')

const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] [Symbol.asyncDispose]() closes a Client (draining what it queued) and a Server (removing its socket)`, async () => {
    const server = new Server(bindAddress(proto))
    let handled = 0
    server.route('n', () => { handled++ })
    const client = new Client(server.endpoint)
    let clientClosed = false
    client.on('close', () => { clientClosed = true })
    for (let i = 0; i < 500; i++) client.send('{"type":"n"}')
    const disposing = client[asyncDispose]()
    assert.ok(disposing instanceof Promise)
    assert.equal(await disposing, undefined)
    assert.equal(clientClosed, true)
    assert.equal(client.stats().delivered, 500, 'the queue was drained before the client closed')
    assert.throws(() => client.send('x'), { code: 'ECLOSED' })
    assert.equal(client[asyncDispose](), client.close(), 'disposing again is the same close')
    await waitFor(() => handled === 500)

    let serverClosed = false
    server.on('close', () => { serverClosed = true })
    await server[asyncDispose]()
    assert.equal(serverClosed, true)
    assert.throws(() => server.route('x', () => {}), { code: 'ECLOSED' })
    if (proto === 'ipc') assert.equal(fs.existsSync(server.endpoint.slice('ipc://'.length)), false)
    // The address is free again: a new server binds it.
    const again = new Server(server.endpoint)
    await again[asyncDispose]()
  })
}
