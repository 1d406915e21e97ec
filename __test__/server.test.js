'use strict'
// Server behaviour on real sockets, over ipc:// and tcp://: routing in Rust, replies, pushes,
// client identity.

const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const { spawn } = require('node:child_process')
const path = require('node:path')
const { Client, Server } = require('..')
const { ROOT, tmpEndpoint, testProtos, bindAddress, startPyRouter, waitFor } = require('./helpers')

function serverWithLog (proto, options) {
  const server = new Server(bindAddress(proto), options)
  const seen = { log: [], message: [] }
  server.route('log', (raw, ctx) => { seen.log.push([raw, ctx.clientId, ctx.isRequest]) })
  server.on('message', (raw) => { seen.message.push(raw) })
  return { server, seen }
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] routing happens by the top-level type field; bait and nested keys fall back to message`, async () => {
    const { server, seen } = serverWithLog(proto)
    const c = new Client(server.endpoint)
    const routed = [
      '{"type":"log","msg":"a"}',
      '{ "type" : "log" }',
      '{"msg":"user asked for time_request","type":"log"}',
      '{"data":{"type":"time_request"},"type":"log"}',
    ]
    const unrouted = [
      '{"msg":"\\"type\\":\\"log\\""}', // the word is inside a string value
      '{"data":{"type":"log"}}', // a nested key
      '{"type_x":"log"}',
      '{"type":"logs"}',
      'log line mentioning "type":"log" but not JSON',
      `{"pad":"${'x'.repeat(300)}","type":"log"}`, // beyond sniffBytes (256)
    ]
    for (const m of [...routed, ...unrouted]) c.send(m)
    await waitFor(() => seen.log.length + seen.message.length === routed.length + unrouted.length)
    assert.deepEqual(seen.log.map(([raw]) => raw), routed)
    assert.deepEqual(seen.message, unrouted)
    assert.equal(seen.log[0][2], false, 'fire-and-forget is not a request')
    const s = server.stats()
    assert.equal(s.routed, routed.length)
    assert.equal(s.unrouted, unrouted.length)
    await c.close()
    await server.close()
  })

  test(`[${proto}] typeField and sniffBytes are configurable`, async () => {
    const server = new Server(bindAddress(proto), { typeField: 'op', sniffBytes: 16 })
    const got = []
    server.route('ping', (raw) => { got.push(raw) })
    server.on('message', (raw) => { got.push('other:' + raw) })
    const c = new Client(server.endpoint)
    c.send('{"op":"ping"}')
    c.send('{"type":"ping"}')
    c.send('{"xxxxxxx":1,"op":"ping"}') // the value ends past byte 16
    await waitFor(() => got.length === 3)
    assert.deepEqual(got, ['{"op":"ping"}', 'other:{"type":"ping"}', 'other:{"xxxxxxx":1,"op":"ping"}'])
    await c.close()
    await server.close()
  })

  test(`[${proto}] ctx.messageId numbers each client's sends in order; nothing is redelivered without a fault`, async () => {
    const server = new Server(bindAddress(proto), { encoding: 'buffer' })
    const ids = []
    server.route('log', (raw, ctx) => { ids.push([ctx.messageId, ctx.redelivered, String(raw)]) })
    server.route('get', (raw, ctx) => [ctx.messageId, ctx.redelivered].join())
    const clients = [new Client(server.endpoint), new Client(server.endpoint)]
    try {
      // 5000 each: several batches, small bodies packed into shared Buffers.
      for (let i = 0; i < 5000; i++) for (const [k, c] of clients.entries()) c.send(`{"type":"log","c":${k},"i":${i}}`)
      await waitFor(() => ids.length === 10_000, 10_000)
      assert.equal(await clients[0].request('{"type":"get"}'), ',false', 'requests carry no messageId')
      const sessions = new Map()
      for (const [id, redelivered, raw] of ids) {
        assert.equal(redelivered, false)
        const m = /^([0-9a-f]{16}):(\d+)$/.exec(id)
        assert.ok(m, id)
        const { c, i } = JSON.parse(raw)
        if (!sessions.has(c)) sessions.set(c, m[1])
        assert.equal(m[1], sessions.get(c), 'one session per client')
        assert.equal(Number(m[2]), i, 'seqs count each client\'s sends from 0')
      }
      assert.notEqual(sessions.get(0), sessions.get(1))
      assert.equal(server.stats().duplicates, 0)
    } finally {
      await Promise.all(clients.map((c) => c.close()))
      await server.close()
    }
  })

  test(`[${proto}] a request is answered by return value, by promise, or by ctx.reply`, async () => {
    const server = new Server(bindAddress(proto))
    server.route('sync', () => 'by-return')
    server.route('buffer', () => Buffer.from('as-buffer'))
    server.route('async', async (raw) => { await new Promise((resolve) => setTimeout(resolve, 5)); return 'by-promise:' + raw.length })
    server.route('later', (raw, ctx) => { assert.equal(ctx.isRequest, true); setTimeout(() => ctx.reply('by-ctx'), 5) })
    server.route('time_request', () => JSON.stringify({ now: Date.now() }))
    const c = new Client(server.endpoint)
    assert.equal(await c.request('{"type":"sync"}'), 'by-return')
    assert.equal(await c.request('{"type":"buffer"}'), 'as-buffer')
    assert.equal(await c.request('{"type":"async"}'), 'by-promise:16')
    assert.equal(await c.request('{"type":"later"}'), 'by-ctx')
    assert.ok(JSON.parse(await c.request('{"type":"time_request"}')).now > 0)
    // Many in flight, answered in any order.
    const all = await Promise.all(Array.from({ length: 500 }, () => c.request('{"type":"later"}')))
    assert.ok(all.every((r) => r === 'by-ctx'))
    await c.close()
    await server.close()
  })

  test(`[${proto}] encoding: 'buffer' hands bodies over as the bytes received, small and large`, async () => {
    const server = new Server(bindAddress(proto), { encoding: 'buffer' })
    const got = []
    server.route('log', (raw) => { got.push(raw) })
    server.route('echo', (raw) => raw)
    server.on('message', (raw, ctx) => { got.push(raw) })
    const c = new Client(server.endpoint)
    // Not valid UTF-8 on purpose: a string would have turned it into U+FFFD.
    const binary = Buffer.from([0x7b, 0xff, 0xfe, 0x7d])
    // Both sides of the 16 KiB line between a copied and an external Buffer.
    const small = '{"type":"log","v":"é"}'
    const large = JSON.stringify({ type: 'log', pad: 'ü'.repeat(40_000) })
    c.send(small)
    c.send(large)
    c.send(binary)
    await waitFor(() => got.length === 3)
    assert.ok(got.every((b) => Buffer.isBuffer(b)))
    assert.equal(got[0].toString(), small)
    assert.equal(got[1].toString(), large)
    assert.deepEqual(got[2], binary)
    const big = Buffer.from(JSON.stringify({ type: 'echo', pad: 'x'.repeat(100_000) }))
    assert.equal(await c.request(big), big.toString())
    assert.throws(() => new Server(bindAddress(proto), { encoding: 'latin1' }), { code: 'ERR_INVALID_ARG_VALUE' })
    await c.close()
    await server.close()
  })

  test(`[${proto}] encoding: 'buffer': a batch of thousands of bodies, small ones packed into several shared Buffers`, async (t) => {
    const server = new Server(bindAddress(proto), { encoding: 'buffer' })
    const got = []
    server.on('message', (raw) => {
      // Hold the JS thread on the first one, so that the rest arrive as one large batch.
      if (got.length === 0) { const t = Date.now(); while (Date.now() - t < 150); }
      got.push(Buffer.from(raw)) // a copy: the shared Buffer must not matter to what we compare
    })
    const c = new Client(server.endpoint)
    t.after(() => Promise.all([c.close(), server.close()]))
    await once(c, 'ready')
    // Distinct bodies of many sizes (1 B … 3 KiB), every 500th one past the 16 KiB external line:
    // about 3 MiB in all, so small bodies span dozens of shared Buffers.
    const sent = []
    for (let i = 0; i < 3000; i++) {
      const size = i % 500 === 499 ? 20_000 + i : 1 + ((i * 7919) % 3072)
      const body = Buffer.alloc(size, i % 251)
      if (size >= 4) body.writeUInt32LE(i, 0)
      sent.push(body)
      assert.equal(c.send(body), true)
    }
    await waitFor(() => got.length === sent.length, 20_000)
    for (let i = 0; i < sent.length; i++) assert.ok(got[i].equals(sent[i]), `body ${i} (${sent[i].length} B) arrived changed`)
  })

  test(`[${proto}] a throwing or rejecting handler answers with EREMOTE and the server keeps serving`, async () => {
    const server = new Server(bindAddress(proto))
    server.route('throws', () => { throw new Error('kaput') })
    server.route('rejects', async () => { throw new Error('async kaput') })
    server.route('wrong', () => 42)
    server.route('ok', () => 'fine')
    const errors = []
    server.on('error', (err) => errors.push(err.message))
    server.route('ff', () => { throw new Error('fire-and-forget kaput') })
    const c = new Client(server.endpoint)
    await assert.rejects(c.request('{"type":"throws"}'), { code: 'EREMOTE', message: 'kaput' })
    await assert.rejects(c.request('{"type":"rejects"}'), { code: 'EREMOTE', message: 'async kaput' })
    await assert.rejects(c.request('{"type":"wrong"}'), { code: 'EREMOTE', message: /returned number/ })
    await assert.rejects(c.request('{"type":"nope"}'), { code: 'EREMOTE', message: 'no route for this message' })
    c.send('{"type":"ff"}')
    assert.equal(await c.request('{"type":"ok"}'), 'fine')
    await waitFor(() => errors.length === 1)
    assert.deepEqual(errors, ['fire-and-forget kaput'])
    await c.close()
    await server.close()
  })

  test(`[${proto}] sendTo and broadcast reach three clients; clients() and ready/clientId agree`, async () => {
    const server = new Server(bindAddress(proto))
    const connects = []
    server.on('connect', (id, info) => connects.push([id, info]))
    const clients = [0, 1, 2].map((i) => new Client(server.endpoint, { name: `c${i}` }))
    const ready = await Promise.all(clients.map((c) => once(c, 'ready').then(([r]) => r)))
    assert.equal(ready[0].serverPid, process.pid)
    assert.ok(clients.every((c) => c.isReady && typeof c.clientId === 'string'))
    await waitFor(() => connects.length === 3)
    assert.deepEqual(server.clients().sort(), clients.map((c) => c.clientId).sort())
    assert.deepEqual(connects.map(([, info]) => info.name).sort(), ['c0', 'c1', 'c2'])

    const inbox = clients.map(() => [])
    clients.forEach((c, i) => c.on('message', (m) => inbox[i].push(m)))
    assert.equal(server.broadcast('to all'), 3)
    assert.equal(server.sendTo(clients[1].clientId, 'just you'), true)
    assert.equal(server.sendTo('nobody', 'x'), false)
    await waitFor(() => inbox.every((m) => m.length >= 1) && inbox[1].length === 2)
    assert.deepEqual(inbox, [['to all'], ['to all', 'just you'], ['to all']])
    await Promise.all(clients.map((c) => c.close()))
    await server.close()
  })

  test(`[${proto}] connect and disconnect events carry the pids of client processes`, async () => {
    const server = new Server(bindAddress(proto))
    const connects = new Map()
    const disconnects = []
    server.on('connect', (id, info) => connects.set(id, info))
    server.on('disconnect', (id, reason) => disconnects.push([id, reason]))
    const script = (mode) => `
      const { Client } = require(${JSON.stringify(ROOT)})
      const c = new Client(${JSON.stringify(server.endpoint)}, { name: 'child-${mode}' })
      // An idle client does not keep a process alive: this timer does, until we are done.
      const alive = setInterval(() => {}, 1000)
      c.on('ready', async () => {
        console.log(c.clientId)
        if (${JSON.stringify(mode)} === 'close') { await c.close(); clearInterval(alive) }
        else setTimeout(() => process.kill(process.pid, 'SIGKILL'), 50)
      })`
    const run = (mode) => {
      const child = spawn(process.execPath, ['-e', script(mode)], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.on('data', (d) => { out += d })
      return once(child, 'exit').then(() => ({ pid: child.pid, id: out.trim() }))
    }
    try {
      const [polite, killed] = await Promise.all([run('close'), run('kill')])
      await waitFor(() => disconnects.length === 2)
      assert.equal(connects.get(polite.id).pid, polite.pid)
      assert.equal(connects.get(polite.id).ppid, process.pid)
      assert.equal(connects.get(polite.id).name, 'child-close')
      assert.equal(connects.get(killed.id).pid, killed.pid)
      assert.deepEqual(new Map(disconnects), new Map([[polite.id, 'goodbye'], [killed.id, 'closed']]))
      assert.deepEqual(server.clients(), [])
    } finally {
      // A failed assertion must not leave the server keeping the file's process alive.
      await server.close()
    }
  })

  test(`[${proto}] a zerowire Client against a plain pyzmq ROUTER works without ready or ids`, async () => {
    const router = await startPyRouter(bindAddress(proto))
    const c = new Client(router.endpoint)
    let ready = false
    c.on('ready', () => { ready = true })
    assert.equal(await c.request('{"type":"x"}'), 'echo:{"type":"x"}')
    assert.equal(ready, false)
    assert.equal(c.isReady, false)
    assert.equal(c.clientId, undefined)
    await c.close()
    await router.stop()
  })

  test(`[${proto}] a pyzmq DEALER speaking the two-frame envelope is served by the zerowire Server`, async () => {
    const server = new Server(bindAddress(proto))
    let logs = 0
    let connectInfo
    server.on('connect', (id, info) => { connectInfo = info })
    server.route('log', () => { logs++ })
    server.route('time_request', (raw, ctx) => `{"now":${Date.now()},"for":"${ctx.clientId}"}`)
    const child = spawn(process.env.PYTHON || 'python3', [path.join(__dirname, 'peers', 'pyzmq_dealer.py'), server.endpoint], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const [code] = await once(child, 'exit')
    assert.equal(code, 0, out)
    const reply = JSON.parse(out)
    assert.equal(reply.frames, 2)
    assert.equal(reply.corr, Buffer.from('\x01py01', 'latin1').toString('hex'))
    assert.ok(JSON.parse(reply.body).now > 0)
    await waitFor(() => logs === 100)
    // No hello, so no name or ppid; over ipc the kernel still says who connected.
    const kernel = proto === 'ipc' && process.platform !== 'win32' ? { uid: process.getuid(), pid: child.pid } : {}
    assert.deepEqual(connectInfo, kernel, 'a plain DEALER sends no hello')
    await server.close()
  })
}

test('bad arguments to the server throw with a code', async () => {
  assert.throws(() => new Server(5), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => new Server('http://x'), { code: 'ERR_INVALID_ARG_VALUE' })
  assert.throws(() => new Server(tmpEndpoint(), { sniffBytes: 0 }), { code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => new Server(tmpEndpoint(), { typeField: '' }), { code: 'ERR_INVALID_ARG_TYPE' })
  const server = new Server(tmpEndpoint(), { maxMessageBytes: 10 })
  assert.throws(() => server.route('', () => {}), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => server.route('x', 'nope'), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => server.broadcast(5), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => server.broadcast('x'.repeat(11)), { code: 'EMSGSIZE' })
  assert.throws(() => server.sendTo('nobody', 5), { code: 'ERR_INVALID_ARG_TYPE' })
  await server.close()
  assert.throws(() => server.broadcast('x'), { code: 'ECLOSED' })
})

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] close(): replies given just before it are written; a reply after it returns false, never throws`, async () => {
    const server = new Server(bindAddress(proto))
    let n = 0
    let late
    server.route('req', (raw, ctx) => {
      if (++n === 5) {
        server.close()
        // Too late for this one: false, and the rest of the batch still runs.
        late = ctx.reply('after close')
        return undefined
      }
      return n <= 4 ? `r${n}` : undefined
    })
    const c = new Client(server.endpoint, { requestTimeoutMs: 3000 })
    await new Promise((resolve) => c.once('ready', resolve))
    const outcomes = await Promise.all(Array.from({ length: 8 }, () =>
      c.request('{"type":"req"}').then((v) => v, (e) => e.code)))
    assert.deepEqual(outcomes.slice(0, 4), ['r1', 'r2', 'r3', 'r4'])
    assert.equal(late, false)
    assert.equal(n, 8, 'every handler of the batch ran')
    await c.close()
  })
}

test('a throwing listener loses nothing else of its batch (and its events are not acked unseen)', async () => {
  const { runNode } = require('./helpers')
  const r = await runNode(`
    const { Client, Server } = require('.')
    let uncaught = 0
    process.on('uncaughtException', () => { uncaught++ })
    const server = new Server('tcp://127.0.0.1:0')
    let got = 0
    server.on('connect', () => { throw new Error('listener bug') })
    server.on('message', () => { got++ })
    const c = new Client(server.endpoint)
    c.on('ready', async () => {
      for (let i = 0; i < 10; i++) c.send('{"type":"x"}')
      const t0 = Date.now()
      while (c.stats().delivered < 10 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10))
      console.log(JSON.stringify({ got, uncaught, delivered: c.stats().delivered }))
      await c.close(); await server.close()
    })
  `)
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { got: 10, uncaught: 1, delivered: 10 })
})
