'use strict'
// API misuse: what a careless caller can hand zerowire. Each gets a clear, coded error (or the
// documented behaviour) and costs nothing else: no reconnect storm, no dead process, no
// request left to time out.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Client, Server } = require('..')
const { tmpEndpoint } = require('./helpers')

const NEVER = 'ipc:///tmp/zw-misuse-never-bound.sock'

test('heartbeat options of 0 are refused (they made a reconnect storm)', () => {
  for (const name of ['heartbeatIntervalMs', 'heartbeatTimeoutMs']) {
    assert.throws(() => new Client(NEVER, { [name]: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }, name)
  }
  assert.throws(() => new Client(NEVER, { heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 500 }),
    { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => new Server(tmpEndpoint(), { heartbeatTimeoutMs: 0 }), { code: 'ERR_OUT_OF_RANGE' })
})

test('socketMode is range-checked before it is converted (2**32 + 0o777 is not 0o777)', () => {
  assert.throws(() => new Server(tmpEndpoint(), { socketMode: 2 ** 32 + 0o777 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
})

test('NaN and Infinity options are a RangeError, as documented; a string is a TypeError', () => {
  for (const v of [NaN, Infinity, -Infinity]) {
    assert.throws(() => new Client(NEVER, { requestTimeoutMs: v }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }, String(v))
    assert.throws(() => new Server(tmpEndpoint(), { lingerMs: v }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }, String(v))
  }
  assert.throws(() => new Client(NEVER, { requestTimeoutMs: '5' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
})

test('a bad server endpoint is a TypeError, as for a client', () => {
  for (const ep of ['tcp://127.0.0.1:99999', 'tcp://127.0.0.1', 'tcp://:5555', 'ipc://']) {
    assert.throws(() => new Server(ep), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' }, ep)
  }
})

test('a client name the server could not take is refused at construction', () => {
  assert.throws(() => new Client(NEVER, { name: 'x'.repeat(100_000) }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  const ok = new Client(NEVER, { name: 'web-1', lingerMs: 0 })
  return ok.close()
})

test('route() after close() is ECLOSED', async () => {
  const server = new Server(tmpEndpoint())
  await server.close()
  assert.throws(() => server.route('x', () => 'y'), { code: 'ECLOSED' })
  assert.throws(() => server.route('x').toSqlite('/tmp/zw-never.db'), { code: 'ECLOSED' })
})

test('a sub-millisecond request timeout is honoured, not replaced by the default', async () => {
  const server = new Server(tmpEndpoint())
  server.route('silent', () => undefined)
  const client = new Client(server.endpoint, { requestTimeoutMs: 60_000 })
  try {
    await client.request('{"type":"silent"}', { timeoutMs: 200 }).catch(() => {})
    const started = Date.now()
    await assert.rejects(client.request('{"type":"silent"}', { timeoutMs: 0.5 }), { code: 'ETIMEDOUT' })
    // The default here is a minute: anything near it means the option was dropped.
    assert.ok(Date.now() - started < 30_000)
  } finally {
    await client.close()
    await server.close()
  }
})

test('a handler reply over maxMessageBytes is an EREMOTE error reply, counted; the server lives', async () => {
  const max = 64 * 1024
  const server = new Server(tmpEndpoint(), { maxMessageBytes: max })
  server.route('echo', (raw) => JSON.stringify({ echo: raw }))
  server.route('later', async (raw) => JSON.stringify({ echo: raw }))
  const client = new Client(server.endpoint, { maxMessageBytes: max })
  try {
    const big = `{"type":"echo","pad":"${'x'.repeat(max - 40)}"}`
    await assert.rejects(client.request(big), (err) => err.code === 'EREMOTE' && /maxMessageBytes/.test(err.message))
    const later = big.replace('"echo"', '"later"')
    await assert.rejects(client.request(later), (err) => err.code === 'EREMOTE' && /maxMessageBytes/.test(err.message))
    assert.equal(server.stats().tooLarge, 2)
    // Still serving.
    assert.equal(await client.request('{"type":"echo"}'), JSON.stringify({ echo: '{"type":"echo"}' }))
  } finally {
    await client.close()
    await server.close()
  }
})

test('ctx.reply() with an oversize body throws and does not spend the request', async () => {
  const max = 16 * 1024
  const server = new Server(tmpEndpoint(), { maxMessageBytes: max })
  let thrown
  server.route('r', (raw, ctx) => {
    try {
      ctx.reply('x'.repeat(max + 1))
    } catch (err) {
      thrown = err
    }
    assert.equal(ctx.reply('small'), true)
  })
  const client = new Client(server.endpoint, { requestTimeoutMs: 10_000 })
  try {
    assert.equal(await client.request('{"type":"r"}'), 'small')
    assert.equal(thrown?.code, 'EMSGSIZE')
  } finally {
    await client.close()
    await server.close()
  }
})
