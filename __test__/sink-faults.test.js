'use strict'
// The SQLite sink when the disk says no: a file that cannot be written, a lock held by another
// process past the busy timeout, a full file system, the files removed under it. In each, no
// row acked to a client is lost (client delivered == rows in the file at the end), the server
// says so once with an 'error' event (code ERR_ZEROWIRE_SINK), stops reading while it cannot
// write, and writes everything it held once the fault clears ('sinkRecovered').
//
// Real faults: a python3 process holding BEGIN EXCLUSIVE, a real 1 MiB tmpfs (needs root to
// mount: skipped otherwise), files removed with unlink.

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync, spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { Client, Server } = require('..')
const { ROOT, tmpEndpoint, waitFor, scratchDir } = require('./helpers')

const PYTHON = process.env.PYTHON || 'python3'
const isRoot = process.getuid?.() === 0
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0
const NOBODY = 65534

function tmpDir () {
  return scratchDir('zw-fault-')
}

function query (db, sql) {
  const script = 'import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))'
  return JSON.parse(execFileSync(PYTHON, ['-c', script, db, sql], { encoding: 'utf8' }))
}

function rows (db) {
  return query(db, 'SELECT count(*) FROM logs')[0][0]
}

/** A python3 sqlite3 connection that takes BEGIN EXCLUSIVE and holds it until released. */
async function holdExclusive (db) {
  const script = [
    'import sqlite3, sys',
    'c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)',
    "c.execute('BEGIN EXCLUSIVE')",
    "print('locked', flush=True)",
    'sys.stdin.readline()',
    "c.execute('COMMIT')",
    "print('released', flush=True)"
  ].join('\n')
  const child = spawn(PYTHON, ['-c', script, db], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => { out += d })
  await waitFor(() => out.includes('locked'), 10_000)
  return {
    async release () {
      child.stdin.end('\n')
      await waitFor(() => out.includes('released'), 10_000)
    },
    kill () { child.kill('SIGKILL') }
  }
}

/** A server whose route 'log' goes to `db`, recording its 'error' and 'sinkRecovered' events. */
function sinkServer (db) {
  const server = new Server(tmpEndpoint())
  const errors = []
  const recovered = []
  server.on('error', (err) => errors.push(err))
  server.on('sinkRecovered', (info) => recovered.push(info))
  server.route('log').toSqlite(db)
  return { server, errors, recovered }
}

async function readyClient (endpoint, options) {
  const client = new Client(endpoint, options)
  await new Promise((resolve) => client.once('ready', resolve))
  return client
}

function mountTmpfs (dir, size) {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir])
}

function unmount (dir) {
  spawnSync('umount', ['-l', dir])
}

test('toSqlite refuses a database on a read-only file system, with a coded error', { skip: !isRoot && 'mounting a file system read-only needs root' }, async () => {
  const dir = tmpDir()
  mountTmpfs(dir, '1m')
  const server = new Server(tmpEndpoint())
  try {
    const db = path.join(dir, 'log.db')
    // A database with the table already there: nothing to create, so only a write can tell.
    query(db, 'CREATE TABLE logs (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, client_id TEXT NOT NULL, raw TEXT NOT NULL)')
    execFileSync('mount', ['-o', 'remount,ro', dir])
    assert.throws(() => server.route('log').toSqlite(db), (err) => {
      assert.equal(err.code, 'ERR_ZEROWIRE_SINK')
      assert.match(err.message, /read-only|readonly/)
      assert.ok(err.message.includes(db), err.message)
      return true
    })
  } finally {
    await server.close()
    unmount(dir)
  }
})

test('toSqlite refuses a file it may not write, and a directory it may not create the -wal in', { skip: !(isRoot && hasSetpriv) && 'runs the check as another user (needs root and setpriv to switch to nobody)' }, () => {
  // Root may write any file: the check runs in a child process as nobody.
  const base = tmpDir()
  fs.chmodSync(base, 0o755)
  const readOnlyFile = path.join(base, 'ro')
  const readOnlyDir = path.join(base, 'rodir')
  const writable = path.join(base, 'ok')
  for (const dir of [readOnlyFile, readOnlyDir, writable]) fs.mkdirSync(dir, { mode: 0o755 })
  const table = 'CREATE TABLE logs (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, client_id TEXT NOT NULL, raw TEXT NOT NULL)'
  for (const dir of [readOnlyFile, readOnlyDir]) query(path.join(dir, 'log.db'), table)
  // Already in WAL mode with its table: opening it needs no write, so SQLite opens it
  // read-only without a word, and every commit would fail.
  query(path.join(readOnlyFile, 'log.db'), 'PRAGMA journal_mode=WAL')
  // ro: the nobody-owned directory holds a file nobody may only read.
  fs.chownSync(readOnlyFile, NOBODY, NOBODY)
  fs.chownSync(path.join(readOnlyFile, 'log.db'), NOBODY, NOBODY)
  fs.chmodSync(path.join(readOnlyFile, 'log.db'), 0o444)
  // rodir: the file is nobody's to write, its directory (root's, 0755) is not.
  fs.chownSync(path.join(readOnlyDir, 'log.db'), NOBODY, NOBODY)
  fs.chownSync(writable, NOBODY, NOBODY)
  const script = `
    const { Server } = require(${JSON.stringify(ROOT)})
    const out = {}
    ;(async () => {
      for (const db of process.argv.slice(1)) {
        const server = new Server('tcp://127.0.0.1:0')
        try { server.route('log').toSqlite(db); out[db] = 'accepted' } catch (err) { out[db] = { code: err.code, message: err.message } }
        await server.close()
      }
      console.log(JSON.stringify(out))
    })()`
  const dbs = [readOnlyFile, readOnlyDir, writable].map((d) => path.join(d, 'log.db'))
  // setpriv, not spawnSync's uid option: that one fails with EACCES when Node itself lives
  // under a directory only root may enter (CI's cached Node versions in /root/.cache).
  const asNobody = [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', script, ...dbs]
  const r = spawnSync('setpriv', asNobody, { encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, r.error?.message ?? r.stderr)
  const out = JSON.parse(r.stdout)
  assert.equal(out[dbs[0]].code, 'ERR_ZEROWIRE_SINK', JSON.stringify(out))
  assert.match(out[dbs[0]].message, /read-only|readonly/)
  assert.equal(out[dbs[1]].code, 'ERR_ZEROWIRE_SINK', JSON.stringify(out))
  assert.equal(out[dbs[2]], 'accepted', 'a file and directory we may write are fine')
})

test('a lock held by another process past the busy timeout: nothing acked or answered until the rows commit, one error, then recovery', async () => {
  const db = path.join(tmpDir(), 'log.db')
  const { server, errors, recovered } = sinkServer(db)
  const client = await readyClient(server.endpoint)
  const lock = await holdExclusive(db)
  try {
    for (let i = 0; i < 100; i++) client.send(`{"type":"log","i":${i}}`)
    let answer
    const reply = client.request('{"type":"log","i":100}', { timeoutMs: 120_000 }).then((r) => { answer = r }, (err) => { answer = err })
    // A client that leaves now: its goodbye is read while its rows wait for the lock, so the
    // goodbye's reply (which confirms everything before it) must wait as well.
    const leaving = await readyClient(server.endpoint, { lingerMs: 1000 })
    for (let i = 0; i < 10; i++) leaving.send(`{"type":"log","leaving":${i}}`)
    await leaving.close()
    assert.equal(leaving.stats().delivered, 0, 'a goodbye confirms no row before it is stored')
    // The first attempt fails after the 5 s busy timeout.
    await waitFor(() => errors.length > 0, 30_000)
    assert.equal(errors[0].code, 'ERR_ZEROWIRE_SINK')
    assert.equal(errors[0].route, 'log')
    assert.equal(errors[0].path, db)
    assert.match(errors[0].message, /locked|busy/i)
    assert.equal(server.stats().sinkFailing, 1)
    // While it cannot write, the server reads no further: these wait in the sockets.
    const sunk = server.stats().sunk
    for (let i = 101; i < 151; i++) client.send(`{"type":"log","i":${i}}`)
    // A second failed attempt is the same episode: no second event.
    await waitFor(() => server.stats().sinkErrors >= 2, 30_000)
    assert.equal(server.stats().sunk, sunk, 'not read while the sink cannot write')
    assert.equal(errors.length, 1, 'one error per episode')
    assert.equal(answer, undefined, 'a request to the sink is not answered before its row is stored')
    assert.equal(client.stats().delivered, 0, 'nothing acked before it is stored')
    assert.equal(server.stats().sinkRows, 0)

    await lock.release()
    await reply
    assert.equal(answer, '')
    await waitFor(() => recovered.length === 1, 30_000)
    assert.deepEqual(recovered[0], { route: 'log', path: db })
    await waitFor(() => client.stats().delivered === 150, 30_000)
  } finally {
    lock.kill()
    await client.close()
    await server.close()
  }
  const s = server.stats()
  // The leaving client's 10 rows were read before the failure: stored, though never confirmed.
  assert.equal(rows(db), 161)
  assert.equal(query(db, 'SELECT count(DISTINCT raw) FROM logs')[0][0], 161)
  assert.equal(s.sinkRows, 161)
  assert.equal(s.sinkLost, 0)
  assert.equal(s.sinkFailing, 0)
  assert.equal(errors.length, 1)
  assert.equal(client.stats().droppedPeerLost, 0)
})

test('a full file system (a 1 MiB tmpfs): rows held and retried, one error, all stored once it grows', { skip: !isRoot && 'mounting a tmpfs needs root' }, async (t) => {
  const dir = tmpDir()
  mountTmpfs(dir, '1m')
  t.after(() => unmount(dir))
  const db = path.join(dir, 'log.db')
  const { server, errors, recovered } = sinkServer(db)
  let client
  const N = 3000
  try {
    client = await readyClient(server.endpoint)
    const pad = 'x'.repeat(1000)
    for (let i = 0; i < N; i++) assert.ok(client.send(`{"type":"log","i":${i},"pad":"${pad}"}`))
    await waitFor(() => errors.length > 0, 30_000)
    assert.equal(errors[0].code, 'ERR_ZEROWIRE_SINK')
    assert.match(errors[0].message, /full/i)
    await waitFor(() => server.stats().sinkErrors >= 3, 30_000)
    assert.equal(errors.length, 1, 'one error per episode')
    const delivered = client.stats().delivered
    assert.ok(delivered < N, 'the disk could not hold them all')
    assert.ok(rows(db) >= delivered, 'every row acked is in the file')
    assert.equal(recovered.length, 0)

    execFileSync('mount', ['-o', 'remount,size=64m', dir])
    await waitFor(() => recovered.length === 1, 30_000)
    await waitFor(() => client.stats().delivered === N, 30_000)
  } finally {
    await client?.close()
    await server.close()
  }
  const s = server.stats()
  assert.equal(rows(db), N)
  assert.equal(query(db, "SELECT count(DISTINCT json_extract(raw, '$.i')) FROM logs")[0][0], N)
  assert.equal(s.sinkRows, N)
  assert.equal(s.sinkLost, 0)
  assert.equal(errors.length, 1)
  assert.equal(client.stats().droppedPeerLost, 0)
})

test('the db, -wal and -shm files removed while running: reported, and the rows go to a new database at the path', async () => {
  const db = path.join(tmpDir(), 'log.db')
  const { server, errors, recovered } = sinkServer(db)
  const client = await readyClient(server.endpoint)
  try {
    for (let i = 0; i < 50; i++) client.send(`{"type":"log","i":${i}}`)
    await waitFor(() => client.stats().delivered === 50, 30_000)
    assert.equal(rows(db), 50)
    for (const f of [db, `${db}-wal`, `${db}-shm`]) fs.rmSync(f, { force: true })
    // At once: these may be committed to the removed files before anyone looks.
    for (let i = 50; i < 100; i++) client.send(`{"type":"log","i":${i}}`)
    await waitFor(() => errors.length > 0, 30_000)
    assert.equal(errors[0].code, 'ERR_ZEROWIRE_SINK')
    assert.match(errors[0].message, /removed/)
    await waitFor(() => recovered.length === 1, 30_000)
    await waitFor(() => client.stats().delivered === 100, 30_000)
  } finally {
    await client.close()
    await server.close()
  }
  // What was in the removed files went with them; everything acked after is in the new one.
  assert.deepEqual(query(db, "SELECT count(*), min(json_extract(raw, '$.i')), max(json_extract(raw, '$.i')) FROM logs")[0], [50, 50, 99])
  assert.equal(errors.length, 1)
  assert.equal(server.stats().sinkLost, 0)
})

test('closing while the sink still cannot write ends, and counts what it gave up as lost, never as delivered', { skip: !isRoot && 'mounting a tmpfs needs root' }, async (t) => {
  const dir = tmpDir()
  mountTmpfs(dir, '1m')
  t.after(() => unmount(dir))
  const db = path.join(dir, 'log.db')
  const { server, errors } = sinkServer(db)
  const client = await readyClient(server.endpoint, { lingerMs: 500 })
  for (let i = 0; i < 20; i++) client.send(`{"type":"log","i":${i}}`)
  await waitFor(() => client.stats().delivered === 20, 30_000)
  // Another file takes what space is left.
  try { fs.writeFileSync(path.join(dir, 'filler'), Buffer.alloc(2 << 20)) } catch (err) { assert.equal(err.code, 'ENOSPC') }
  for (let i = 20; i < 50; i++) client.send(`{"type":"log","i":${i}}`)
  await waitFor(() => errors.length > 0, 30_000)
  await client.close()
  const started = Date.now()
  await server.close()
  const s = server.stats()
  t.diagnostic(`close took ${Date.now() - started} ms; sinkLost ${s.sinkLost}, sinkErrors ${s.sinkErrors}`)
  assert.equal(client.stats().delivered, 20, 'nothing acked after the disk filled up')
  assert.equal(s.sinkRows, 20)
  // Reading stopped once the sink failed: some of the 30 may still have waited in the socket.
  assert.ok(s.sunk > 20 && s.sunk <= 50, `sunk ${s.sunk}`)
  assert.equal(s.sinkLost, s.sunk - 20, 'what the sink held at close is counted lost')
  assert.equal(s.sinkFailing, 0, 'a sink closed is no longer failing')
  assert.equal(rows(db), 20)
})

test('without an error listener a sink failure is a process warning, and the server lives on', async () => {
  const db = path.join(tmpDir(), 'log.db')
  const server = new Server(tmpEndpoint())
  server.route('log').toSqlite(db)
  const warnings = []
  const onWarning = (w) => { if (w.name === 'ZerowireSinkWarning') warnings.push(w) }
  process.on('warning', onWarning)
  const client = await readyClient(server.endpoint)
  try {
    for (const f of [db, `${db}-wal`, `${db}-shm`]) fs.rmSync(f, { force: true })
    await waitFor(() => warnings.length > 0, 30_000)
    assert.equal(warnings[0].code, 'ERR_ZEROWIRE_SINK')
    assert.match(warnings[0].message, /removed/)
    client.send('{"type":"log","after":1}')
    await waitFor(() => client.stats().delivered === 1, 30_000)
  } finally {
    process.off('warning', onWarning)
    await client.close()
    await server.close()
  }
  assert.equal(rows(db), 1)
})

test('a client closing right after its sends to a sink is confirmed once they are committed, within its linger', async () => {
  const db = path.join(tmpDir(), 'log.db')
  const { server, errors } = sinkServer(db)
  try {
    for (let round = 0; round < 5; round++) {
      const client = await readyClient(server.endpoint)
      for (let i = 0; i < 1000; i++) client.send(`{"type":"log","round":${round},"i":${i}}`)
      await client.close()
      const s = client.stats()
      assert.equal(s.delivered, 1000, `round ${round}: ${JSON.stringify(s)}`)
      assert.ok(rows(db) >= 1000 * (round + 1), 'confirmed rows are in the file')
    }
  } finally {
    await server.close()
  }
  assert.equal(rows(db), 5000)
  assert.deepEqual(errors, [])
})
