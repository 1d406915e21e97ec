'use strict'
// server.route(name).toSqlite(path): messages stored by a Rust thread in a real SQLite file,
// read back with python3's sqlite3 (an independent reader of the same file format).

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { Client, Server } = require('..')
const { tmpEndpoint, testProtos, bindAddress, scratchDir } = require('./helpers')

/** A database file in a directory of its own. */
function tmpDb (name) {
  return path.join(scratchDir('zw-'), name)
}

function query (db, sql) {
  const script = 'import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))'
  return JSON.parse(execFileSync(process.env.PYTHON || 'python3', ['-c', script, db, sql], { encoding: 'utf8' }))
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] log messages from two clients land in the SQLite file exactly once, never waking JS`, async () => {
    const db = tmpDb('log.db')
    const server = new Server(bindAddress(proto))
    const endpoint = server.endpoint
    let wokeJs = 0
    server.on('message', () => { wokeJs++ })
    assert.equal(server.route('log').toSqlite(db), server)
    server.route('time_request', () => 'now')

    const clients = [new Client(endpoint), new Client(endpoint)]
    const ids = await Promise.all(clients.map((c) => new Promise((resolve) => c.once('ready', (r) => resolve(r.clientId)))))
    const N = 5000
    for (let i = 0; i < N; i++) clients[i % 2].send(`{"type":"log","i":${i},"text":"é\\u0000"}`)
    // Same connection, sent after: each reply proves that client's logs were read.
    assert.deepEqual(await Promise.all(clients.map((c) => c.request('{"type":"time_request"}'))), ['now', 'now'])
    assert.equal(await clients[0].request('{"type":"log","i":-1}'), '', 'a request to a sink is acked empty')
    await Promise.all(clients.map((c) => c.close()))
    await server.close() // flushes and joins the writer

    const s = server.stats()
    assert.equal(wokeJs, 0)
    assert.equal(s.sunk, N + 1)
    assert.equal(s.sinkRows, N + 1)
    assert.equal(s.sinkErrors, 0)
    assert.ok(s.sinkBatches >= 1)
    const [[count, distinct, minI, maxI]] = query(db, "SELECT count(*), count(DISTINCT raw), min(json_extract(raw, '$.i')), max(json_extract(raw, '$.i')) FROM logs")
    assert.deepEqual([count, distinct, minI, maxI], [N + 1, N + 1, -1, N - 1])
    const perClient = Object.fromEntries(query(db, 'SELECT client_id, count(*) FROM logs GROUP BY client_id'))
    assert.deepEqual(perClient, { [ids[0]]: N / 2 + 1, [ids[1]]: N / 2 })
    // The two clients' messages interleave in whatever order the ROUTER read them: pick i = 0.
    const [[raw, receivedAt]] = query(db, "SELECT raw, received_at FROM logs WHERE json_extract(raw, '$.i') = 0")
    assert.equal(raw, '{"type":"log","i":0,"text":"é\\u0000"}', 'stored byte for byte')
    assert.ok(Math.abs(receivedAt - Date.now()) < 600_000, 'received_at is epoch milliseconds')
  })
}

test('toSqlite: bad arguments and unwritable paths throw at the call', async () => {
  const server = new Server(tmpEndpoint())
  try {
    assert.throws(() => server.route('log').toSqlite(42), { code: 'ERR_INVALID_ARG_TYPE' })
    assert.throws(() => server.route('log').toSqlite('/nonexistent-zw/dir/log.db'), { code: 'ERR_ZEROWIRE_SINK' })
    const dir = scratchDir('zw-')
    assert.throws(() => server.route('log').toSqlite(path.join(dir, 'x.db'), { table: 'x; DROP' }), RangeError)
  } finally {
    await server.close()
  }
})

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] route(name, handler) after toSqlite takes the route back to JS`, async () => {
    const db = tmpDb('log.db')
    const server = new Server(bindAddress(proto))
    const endpoint = server.endpoint
    server.route('log').toSqlite(db)
    server.route('log', (raw) => `js:${raw.length}`)
    const client = new Client(endpoint)
    try {
      assert.equal(await client.request('{"type":"log"}'), 'js:14')
    } finally {
      await client.close()
      await server.close()
    }
    assert.equal(server.stats().sunk, 0)
  })
}

test('a body that is not UTF-8 is stored as a BLOB of its bytes, so readers can still read every row', async () => {
  const db = tmpDb('bytes.db')
  const server = new Server(tmpEndpoint())
  server.route('log').toSqlite(db)
  server.route('barrier', () => 'ok')
  const client = new Client(server.endpoint)
  const bad = Buffer.concat([Buffer.from('{"type":"log","b":"'), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('"}')])
  client.send(bad)
  client.send('{"type":"log","text":"é"}')
  await client.request('{"type":"barrier"}')
  await client.close()
  await server.close()
  // Python's sqlite3 decodes TEXT as UTF-8: one invalid TEXT row made the whole SELECT fail.
  const script = 'import json, sqlite3, sys; rows = sqlite3.connect(sys.argv[1]).execute("SELECT raw FROM logs ORDER BY id").fetchall(); print(json.dumps([(type(r[0]).__name__, r[0].hex() if isinstance(r[0], bytes) else r[0]) for r in rows]))'
  const rows = JSON.parse(execFileSync(process.env.PYTHON || 'python3', ['-c', script, db], { encoding: 'utf8' }))
  assert.deepEqual(rows, [['bytes', bad.toString('hex')], ['str', '{"type":"log","text":"é"}']])
})
