'use strict'
// Faults: servers that die and come back, that stop reading, several endpoints, retries,
// and the accounting that says where every send() went. Real sockets, real processes.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { Client, Server } = require('..')
const { testProtos, bindAddress, uniqAddress, waitFor, runNode, startPyRouter, scratchDir } = require('./helpers')

const COUNTING_SERVER = path.join(__dirname, 'peers', 'counting_server.js')
const SINK_SERVER = path.join(__dirname, 'peers', 'sink_server.js')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts counting_server.js; resolves once it is bound. */
function startCountingServer (endpoint, file) {
  return startPeer(COUNTING_SERVER, endpoint, file)
}

/** Starts a server script of peers/ with its arguments; resolves once it is bound. */
function startPeer (script, ...args) {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${path.basename(script)} did not start`)), 10_000)
    child.once('exit', (code, signal) => reject(new Error(`${path.basename(script)} exited (${code ?? signal})`)))
    child.stdout.once('data', () => {
      clearTimeout(timer)
      child.removeAllListeners('exit')
      resolve(child)
    })
  })
}

/** Ends a peer the way a deploy would: stdin closes, it closes its server and exits. */
function stop (child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', resolve)
    child.stdin.end()
  })
}

/** The rows of a SQLite query, read by python3's sqlite3. */
function query (db, sql) {
  const script = 'import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))'
  return JSON.parse(execFileSync(process.env.PYTHON || 'python3', ['-c', script, db, sql], { encoding: 'utf8' }))
}

/**
 * Sends messages 0..total-1 made by `body(n)`, paced to outlast a storm (a send refused at the
 * marks is tried again later, keeping its number), while `storm()` runs; resolves with the
 * storm's result once both are done.
 */
async function streamThrough (c, total, body, storm) {
  let n = 0
  let calm = false
  const sending = (async () => {
    while (n < total) {
      const burst = calm ? 1000 : 80
      for (let k = 0; k < burst && n < total; k++) {
        if (!c.send(body(n))) break
        n++
      }
      await sleep(5)
    }
  })()
  const result = await storm()
  calm = true
  await sending
  return result
}

function kill (child, signal = 'SIGKILL') {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', resolve)
    child.kill(signal)
  })
}

/** Lines of one server incarnation's file: { bound, first, seqs, marked, ids }. */
function readServerFile (file) {
  const out = { bound: undefined, first: undefined, seqs: [], marked: [], ids: [] }
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue
    const [word, value, id] = line.split(' ')
    if (word === 'bound') out.bound = Number(value)
    else if (word === 'first') out.first = Number(value)
    else {
      out.seqs.push(Number(word))
      out.marked.push(value === 'R')
      out.ids.push(id)
    }
  }
  return out
}

for (const proto of testProtos('ipc', 'tcp')) {
  // The client keeps every send until the server has handled it and replays what a killed
  // server did not confirm: nothing is lost, and whatever may have been handled twice comes
  // marked redelivered, with the same messageId each time.
  test(`[${proto}] a server SIGKILLed and restarted 5 times during a 100 k stream: every send is handled, duplicates marked`, async (t) => {
    const ep = await uniqAddress(proto)
    const dir = scratchDir('zw-count-')
    const files = []
    const start = async () => {
      const file = path.join(dir, `server-${files.length}.txt`)
      files.push(file)
      return startCountingServer(ep, file)
    }
    let server = await start()
    const c = new Client(ep, { lingerMs: 10_000 })
    const dropEvents = {}
    c.on('drop', ({ reason, count }) => { dropEvents[reason] = (dropEvents[reason] || 0) + count })

    const TOTAL = 100_000
    let seq = 0
    const accepted = new Set()
    // The stream is paced to outlast the five restarts, whatever the machine's speed; a send
    // refused at the marks is tried again later (its number stays).
    let restarting = true
    const sending = (async () => {
      while (seq < TOTAL) {
        const burst = restarting ? 40 : 1000
        for (let k = 0; k < burst && seq < TOTAL; k++) {
          if (!c.send(String(seq))) break
          accepted.add(seq++)
        }
        await sleep(5)
      }
    })()
    for (let restart = 0; restart < 5; restart++) {
      // Each incarnation gets some of the stream before it dies, however long the client's
      // reconnect backoff (tcp:// has no socket file to watch) or a loaded machine takes.
      await waitFor(() => readServerFile(files[files.length - 1]).first !== undefined, 20_000)
      await sleep(400)
      await kill(server)
      // Down for a while: sends pile up in the client meanwhile.
      await sleep(150)
      server = await start()
    }
    await waitFor(() => readServerFile(files[files.length - 1]).first !== undefined, 20_000)
    restarting = false
    await sending
    await c.close()
    const s = c.stats()
    await kill(server, 'SIGTERM')

    const incarnations = files.map(readServerFile)
    const seen = new Map() // seq → messageId
    let handled = 0
    let duplicates = 0
    for (const inc of incarnations) {
      const here = new Set()
      inc.seqs.forEach((n, k) => {
        assert.ok(!here.has(n), `message ${n} was handled twice by one server process`)
        here.add(n)
        assert.ok(inc.ids[k] && inc.ids[k] !== 'undefined', 'every message has a messageId')
        if (seen.has(n)) {
          duplicates++
          assert.ok(inc.marked[k], `message ${n} was handled again without being marked redelivered`)
          assert.equal(inc.ids[k], seen.get(n), `message ${n} kept its messageId`)
        } else {
          seen.set(n, inc.ids[k])
        }
        handled++
      })
    }
    t.diagnostic(`client: ${JSON.stringify({ sent: s.sent, delivered: s.delivered, refused: s.refused, replayed: s.replayed, droppedPeerLost: s.droppedPeerLost, droppedClosed: s.droppedClosed })}`)
    t.diagnostic(`servers handled ${handled} (${duplicates} again, marked) across ${incarnations.length} incarnations`)
    const gaps = incarnations.slice(1).filter((i) => i.first !== undefined).map((i) => i.first - i.bound)
    t.diagnostic(`bind → first delivered message, per restart (ms): ${gaps.join(', ')}`)

    assert.equal(accepted.size, TOTAL)
    for (let n = 0; n < TOTAL; n++) assert.ok(seen.has(n), `message ${n} was never handled`)
    assert.equal(new Set(seen.values()).size, TOTAL, 'messageIds are distinct')
    assert.equal(s.inFlight, 0)
    assert.equal(s.dropped, 0, 'nothing dropped')
    assert.equal(s.droppedPeerLost, 0)
    assert.equal(s.delivered, TOTAL)
    assert.equal(s.sent, s.delivered + s.refused)
    assert.equal(dropEvents['peer-lost'] || 0, 0)
    assert.equal(gaps.length, 5, 'every restarted server received messages')
    for (const gap of gaps) assert.ok(gap < 2000, `bind → first message took ${gap} ms (backoff, not the bind, decided)`)
  })

  // close() waits for the server's answer to its goodbye; that answer must also mean "handled",
  // as the acks do: a service stopped the moment the client has closed (a deploy) loses
  // nothing the client counted as delivered, however far its handlers lag behind its reading.
  test(`[${proto}] close() resolves once the server has handled every send: killing it right after loses nothing`, async (t) => {
    const ep = await uniqAddress(proto)
    const file = path.join(scratchDir('zw-goodbye-'), 'server.txt')
    // 40 µs per message: 20 000 take the handlers ~0.8 s, far longer than reading them.
    const server = await startPeer(COUNTING_SERVER, ep, file, '-', '40')
    const c = new Client(ep, { lingerMs: 30_000 })
    await waitFor(() => c.isReady, 10_000)
    const TOTAL = 20_000
    for (let n = 0; n < TOTAL; n++) assert.ok(c.send(String(n)))
    await c.close()
    await kill(server)
    const s = c.stats()
    const { seqs } = readServerFile(file)
    t.diagnostic(`client delivered ${s.delivered} of ${s.sent}; server handled ${seqs.length}`)
    assert.equal(s.delivered, TOTAL)
    assert.equal(new Set(seqs).size, TOTAL, 'every send the client counted as delivered was handled')
  })

  // The same storm into toSqlite: the client replays what a killed server did not confirm
  // (acked only once written), and the database skips what it already holds.
  test(`[${proto}] a toSqlite server SIGKILLed and restarted 5 times during a 100 k stream: every message stored exactly once`, async (t) => {
    const ep = await uniqAddress(proto)
    const db = path.join(scratchDir('zw-sink-'), 'log.db')
    let server = await startPeer(SINK_SERVER, ep, db)
    const c = new Client(ep, { lingerMs: 10_000 })
    const TOTAL = 100_000
    await streamThrough(c, TOTAL, (n) => `{"type":"log","n":${n}}`, async () => {
      for (let restart = 0; restart < 5; restart++) {
        await sleep(400)
        await kill(server)
        await sleep(150)
        server = await startPeer(SINK_SERVER, ep, db)
      }
    })
    await waitFor(() => c.stats().delivered === TOTAL, 60_000)
    await c.close()
    await stop(server)
    const s = c.stats()
    const [[rows, distinct, lo, hi]] = query(db, "SELECT count(*), count(DISTINCT raw), min(json_extract(raw, '$.n')), max(json_extract(raw, '$.n')) FROM logs")
    t.diagnostic(`client: ${JSON.stringify({ sent: s.sent, delivered: s.delivered, refused: s.refused, replayed: s.replayed, dropped: s.dropped })}; rows ${rows}, distinct ${distinct}`)
    assert.ok(s.replayed > 0, 'the storm made the client replay')
    assert.deepEqual([rows, distinct, lo, hi], [TOTAL, TOTAL, 0, TOTAL - 1], 'every message stored exactly once')
    assert.equal(s.dropped, 0)
    assert.equal(s.sent, s.delivered + s.refused)
  })

  // Two endpoints, one of them killed for good: what it had not confirmed goes to the other,
  // first, under its own messageIds, marked redelivered.
  test(`[${proto}] failover: a killed endpoint's unconfirmed sends are replayed on the other one`, async (t) => {
    const eps = [await uniqAddress(proto, 'a'), await uniqAddress(proto, 'b')]
    const dir = scratchDir('zw-failover-')
    const files = [path.join(dir, 'a.txt'), path.join(dir, 'b.txt')]
    // The endpoint to be killed handles a message per millisecond, slower than it is sent
    // them: it always holds sends it has not confirmed, which the kill leaves to be replayed.
    const servers = await Promise.all([
      startPeer(COUNTING_SERVER, eps[0], files[0], '-', '1000'),
      startCountingServer(eps[1], files[1])
    ])
    const c = new Client(eps, { lingerMs: 10_000 })
    const ready = new Set()
    c.on('ready', (info) => ready.add(info.endpoint))
    await waitFor(() => ready.size === 2, 10_000)
    const TOTAL = 20_000
    await streamThrough(c, TOTAL, (n) => String(n), async () => {
      await waitFor(() => c.stats().sent - c.stats().delivered >= 200, 10_000)
      await kill(servers[0])
    })
    await waitFor(() => c.stats().delivered === TOTAL, 60_000)
    await c.close()
    await stop(servers[1])
    const s = c.stats()
    const [a, b] = files.map(readServerFile)
    const idOf = new Map()
    a.seqs.forEach((n, k) => idOf.set(n, a.ids[k]))
    let again = 0
    b.seqs.forEach((n, k) => {
      if (idOf.has(n)) {
        again++
        assert.ok(b.marked[k], `message ${n} handled again without being marked redelivered`)
        assert.equal(b.ids[k], idOf.get(n), `message ${n} kept its messageId`)
      } else {
        idOf.set(n, b.ids[k])
      }
    })
    t.diagnostic(`a handled ${a.seqs.length}, b ${b.seqs.length} (${again} again); client ${JSON.stringify({ delivered: s.delivered, replayed: s.replayed, dropped: s.dropped })}`)
    for (let n = 0; n < TOTAL; n++) assert.ok(idOf.has(n), `message ${n} was never handled`)
    assert.ok(a.seqs.length > 0 && s.replayed > 0, 'the killed endpoint had taken sends, and they were replayed')
    assert.equal(s.dropped, 0)
    assert.equal(s.delivered, TOTAL)
  })

  test(`[${proto}] a server that stops reading: the client queues up to its marks, then refuses; memory plateaus`, async () => {
    const ep = await uniqAddress(proto)
    // Bound, but never reads: the kernel buffers, then libzmq's, then ours fill up.
    const py = spawn('python3', ['-c', `
import sys, zmq
s = zmq.Context().socket(zmq.ROUTER)
s.bind(sys.argv[1])
print('ready', flush=True)
sys.stdin.read()
`, ep], { stdio: ['pipe', 'pipe', 'inherit'] })
    await new Promise((resolve) => py.stdout.once('data', resolve))
    const r = await runNode(`
      const { Client } = require('.')
      const c = new Client(${JSON.stringify(ep)}, { sendHighWaterMark: 20000, lingerMs: 0 })
      const body = 'x'.repeat(1024)
      const rss = () => process.memoryUsage().rss
      let thrown = 0
      async function flood (n) {
        for (let i = 0; i < n; i++) {
          try { c.send(body) } catch { thrown++ }
          if (i % 1000 === 999) await new Promise((r) => setImmediate(r))
        }
      }
      ;(async () => {
        await flood(400000)
        // Below our queue the socket layer holds a few more messages per connection (README,
        // Limits), which the engine fills at whatever pace the machine allows: flood on until
        // nothing more is written, so that the second flood starts from the plateau. On a busy
        // machine the engine thread can be kept off the CPU for a while, so "nothing more"
        // means three rounds in a row.
        for (let rounds = 0, still = 0, before = -1; rounds < 100 && still < 3; rounds++) {
          before = c.stats().written
          await flood(20000)
          await new Promise((r) => setTimeout(r, 200))
          still = c.stats().written === before ? still + 1 : 0
        }
        global.gc && global.gc()
        const first = rss()
        await flood(400000)
        const second = rss()
        const s = c.stats()
        console.log(JSON.stringify({ first, second, thrown, refused: s.refused, queued: s.queued, sent: s.sent }))
        await c.close()
      })()
    `, { timeoutMs: 60_000 })
    py.stdin.end()
    await kill(py)
    assert.equal(r.code, 0, r.stderr)
    const m = JSON.parse(r.stdout)
    assert.equal(m.thrown, 0, 'send() never throws on load')
    assert.ok(m.refused > 0, 'the marks refused')
    assert.ok(m.queued <= 20000, `queued ${m.queued} is within the mark`)
    // Once full, more sends are refused without holding memory: the second flood adds nothing
    // beyond allocator noise.
    const growth = (m.second - m.first) / (1 << 20)
    assert.ok(growth < 32, `RSS grew ${growth.toFixed(1)} MiB during the refused flood`)
  })

  test(`[${proto}] several endpoints: sends go round-robin over the connected ones and fail over`, async () => {
    const a = new Server(bindAddress(proto, 'a'))
    const b = new Server(bindAddress(proto, 'b'))
    const got = { a: 0, b: 0 }
    a.on('message', () => { got.a++ })
    b.on('message', () => { got.b++ })
    const c = new Client([a.endpoint, b.endpoint])
    const ready = new Set()
    c.on('ready', (info) => ready.add(info.endpoint))
    await waitFor(() => ready.size === 2, 10_000)
    for (let i = 0; i < 1000; i++) c.send('{"type":"x"}')
    await waitFor(() => c.stats().delivered === 1000, 10_000)
    assert.equal(got.a + got.b, 1000)
    assert.ok(got.a >= 400 && got.b >= 400, `round-robin: ${got.a} / ${got.b}`)

    const disconnected = new Promise((resolve) => c.once('disconnect', resolve))
    await a.close()
    assert.equal((await disconnected).endpoint, a.endpoint)
    for (let i = 0; i < 1000; i++) c.send('{"type":"x"}')
    await waitFor(() => c.stats().delivered === 2000, 10_000)
    assert.equal(got.b, 2000 - got.a, 'everything after the failover went to b')
    assert.equal(c.isReady, true)
    await c.close()
    await b.close()
    const s = c.stats()
    assert.equal(s.sent, s.delivered + s.refused + s.dropped)
  })

  test(`[${proto}] retries (idempotent requests): resent on timeout and on a lost connection; duplicates dropped`, async () => {
    const ep = await uniqAddress(proto)
    let server = new Server(ep)
    let attempts = 0
    server.route('get', (raw, ctx) => {
      attempts++
      // The first attempt is answered too late, after the retry: that reply wins (same id)
      // and the retry's reply is dropped as a duplicate.
      if (attempts === 1) return new Promise((resolve) => setTimeout(() => resolve('slow'), 250))
      return 'fast'
    })
    const c = new Client(ep)
    await new Promise((resolve) => c.once('ready', resolve))
    const reply = await c.request('{"type":"get"}', { timeoutMs: 150, retries: 2 })
    assert.equal(attempts, 2)
    assert.ok(reply === 'slow' || reply === 'fast')
    await waitFor(() => c.stats().lateReplies === 1, 5000)
    assert.equal(c.stats().retries, 1)
    await assert.rejects(c.request('{"type":"nobody"}', { timeoutMs: 50, retries: 1 }), { code: 'EREMOTE' })

    // Lost connection: the server goes away with the request unanswered; the retry goes to the
    // server that comes back on the same path.
    await server.close()
    server = new Server(ep)
    let held = 0
    server.route('get', () => { held++; return new Promise(() => {}) })
    await waitFor(() => c.isReady, 10_000)
    // A retry may still meet the closing server (its listener goes last), so allow a few.
    const pending = c.request('{"type":"get"}', { timeoutMs: 5000, retries: 3 })
    await waitFor(() => held === 1, 5000)
    await server.close()
    server = new Server(ep)
    server.route('get', () => 'from the new server')
    assert.equal(await pending, 'from the new server')
    // Without retries the same loss rejects at once.
    const s2 = new Server(bindAddress(proto))
    s2.route('get', () => new Promise(() => {}))
    const c2 = new Client(s2.endpoint)
    await new Promise((resolve) => c2.once('ready', resolve))
    const lost = assert.rejects(c2.request('{"type":"get"}', { timeoutMs: 5000 }), { code: 'ECONNRESET' })
    await waitFor(() => s2.stats().requests === 1, 5000)
    await s2.close()
    await lost
    await Promise.all([c.close(), c2.close(), server.close()])
    await assert.rejects(c.request('x', { retries: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  })

  test(`[${proto}] retried requests take their room under the marks once: the queue never looks full after them`, async () => {
    // Each retry is a second write of a request the queue counted once. Counting its room back
    // again made the client's queue look full for good once it next filled up: every later
    // send() refused, with nothing queued.
    const r = await startPyRouter(bindAddress(proto))
    const c = new Client(r.endpoint, { sendHighWaterMark: 4, lingerMs: 0 })
    try {
      assert.equal(await c.request('hi'), 'echo:hi')
      for (let i = 0; i < 3; i++) {
        await assert.rejects(c.request('silent', { timeoutMs: 40, retries: 2 }), { code: 'ETIMEDOUT' })
      }
      assert.equal(c.stats().retries, 6)
      for (let round = 0; round < 3; round++) {
        const accepted = Array.from({ length: 4 }, (_, i) => c.send(`m${round}.${i}`))
        assert.deepEqual(accepted, [true, true, true, true], `round ${round}: ${JSON.stringify(c.stats())}`)
        assert.equal(c.send('over'), false, 'the fifth is over the mark')
        await waitFor(() => c.stats().queued === 0, 10_000)
      }
      const s = c.stats()
      assert.equal(s.sent, s.delivered + s.refused + s.dropped + s.inFlight)
    } finally {
      await c.close()
      await r.stop()
    }
  })

  // A request written on a connection that is then lost is retried elsewhere: it may be
  // handled twice (at-least-once), but the caller gets exactly one answer.
  test(`[${proto}] a retried request handled by a server killed before answering is answered once, by the next`, async () => {
    const eps = [await uniqAddress(proto, 'a'), await uniqAddress(proto, 'b')]
    const dir = scratchDir('zw-retry-')
    const files = [path.join(dir, 'a.txt'), path.join(dir, 'b.txt')]
    // a answers after 60 s: it handles the request and dies first.
    const a = await startPeer(COUNTING_SERVER, eps[0], files[0], '60000')
    const c = new Client(eps, { lingerMs: 1000 })
    await new Promise((resolve) => c.once('ready', resolve))
    const answers = []
    const pending = c.request('{"type":"get"}', { timeoutMs: 30_000, retries: 2 }).then((r) => { answers.push(r); return r })
    await waitFor(() => readServerFile(files[0]).seqs.length === 1, 10_000)
    const b = await startPeer(COUNTING_SERVER, eps[1], files[1])
    await waitFor(() => c.stats().connects >= 2 && c.isReady, 10_000)
    await kill(a)
    assert.equal(await pending, 'ok:{"type":"get"}')
    await sleep(200)
    const s = c.stats()
    await c.close()
    await stop(b)
    assert.equal(readServerFile(files[0]).seqs.length, 1, 'the dead server had handled it')
    assert.equal(readServerFile(files[1]).seqs.length, 1, 'the next one handled it again')
    assert.deepEqual(answers, ['ok:{"type":"get"}'])
    assert.deepEqual([s.retries, s.replies, s.lateReplies, s.resets], [1, 1, 0, 0])
  })

  test(`[${proto}] whenFull "drop-oldest": the newest sends are kept, the oldest dropped with reason overflow`, async () => {
    const ep = await uniqAddress(proto)
    const c = new Client(ep, { sendHighWaterMark: 100, whenFull: 'drop-oldest' })
    const drops = []
    c.on('drop', (d) => drops.push(d))
    for (let i = 0; i < 1000; i++) {
      assert.equal(c.send(String(i)), true)
      // Let the engine thread trim before the next batch, so the host's hard limit (twice the
      // mark, for an engine that falls behind) never refuses, however loaded the machine.
      if (i % 50 === 49) await waitFor(() => c.stats().queued <= 100, 10_000, 1)
    }
    await waitFor(() => drops.length > 0, 5000)
    const server = new Server(ep)
    const got = []
    server.on('message', (raw) => got.push(Number(raw)))
    await waitFor(() => c.stats().inFlight === 0, 10_000)
    const s = c.stats()
    assert.equal(s.sent, 1000)
    assert.equal(s.sent, s.delivered + s.refused + s.dropped)
    assert.deepEqual([s.refused, s.delivered, s.droppedOverflow], [0, 100, 900])
    assert.deepEqual(got, Array.from({ length: 100 }, (_, k) => 900 + k), 'the newest 100 survived, in order')
    assert.equal(drops[0].reason, 'overflow')
    assert.throws(() => new Client(ep, { whenFull: 'block' }), { code: 'ERR_INVALID_ARG_VALUE' })
    await c.close()
    await server.close()
  })
}
