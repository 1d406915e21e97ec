'use strict'
// The demo end to end, as its users run it: `npm run demo` (examples/demo.js) starts the
// service and the Express + ws app as two processes; real HTTP (fetch) and real WebSocket
// clients (ws) drive them; Ctrl-C (SIGINT) stops them; the SQLite file is read back by python3.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const WebSocket = require('ws')
const { ROOT, waitFor, scratchDir } = require('./helpers')

function startDemo (db) {
  const child = spawn(process.execPath, [path.join(ROOT, 'examples', 'demo.js')], {
    cwd: ROOT,
    // The demo's default endpoint is in the temporary directory: a fresh one per run keeps it
    // apart from a demo or test running beside it.
    env: { ...process.env, PORT: '0', ZW_DB: db, ZW_STATS_MS: '100', TMPDIR: scratchDir('zw-demo-') },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const out = { stdout: '', stderr: '' }
  child.stdout.on('data', (d) => { out.stdout += d })
  child.stderr.on('data', (d) => { out.stderr += d })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  return { child, out, exited }
}

function openSocket (url) {
  const ws = new WebSocket(url)
  ws.received = []
  ws.on('message', (data, isBinary) => ws.received.push({ data, isBinary }))
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

/** Prometheus text format 0.0.4: every line a comment or `name{labels} value`. */
function parseMetrics (text) {
  const samples = new Map()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      assert.match(line, /^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|summary|histogram|untyped)$/, line)
      continue
    }
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})?) (-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/)
    assert.ok(m, `not a Prometheus sample: ${line}`)
    assert.ok(!samples.has(m[1]), `duplicate sample ${m[1]}`)
    samples.set(m[1], Number(m[2]))
  }
  return samples
}

test('npm run demo: logs land in SQLite once each, /time answers, ws frames relay byte-identical, /metrics parses, Ctrl-C exits 0', async (t) => {
  const dir = scratchDir('zw-e2e-')
  const db = path.join(dir, 'logs.db')
  const demo = startDemo(db)
  t.after(() => { if (demo.child.exitCode === null) demo.child.kill('SIGKILL') })

  const url = (await waitFor(() => demo.out.stdout.match(/demo: ready at (http:\/\/[\d.]+:\d+)/), 30_000))[1]
  const wsUrl = url.replace('http', 'ws') + '/ws'

  // POST /log: 202 at once, body forwarded as-is (odd spacing and non-ASCII included).
  const sent = []
  for (let batch = 0; batch < 10; batch++) {
    const bodies = Array.from({ length: 50 }, (_, i) => `{"type":"log", "n":${batch * 50 + i},"msg":"caf\u00e9 \u2603"}`)
    sent.push(...bodies)
    const statuses = await Promise.all(bodies.map((body) => fetch(`${url}/log`, { method: 'POST', body }).then((r) => r.status)))
    assert.deepEqual([...new Set(statuses)], [202])
  }

  // GET /time: the service's reply, as-is.
  const time = await fetch(`${url}/time`)
  assert.equal(time.status, 200)
  assert.ok(Number.isFinite(Date.parse(JSON.parse(await time.text()).now)))

  // WebSocket: each frame goes to every other browser unchanged, not back to its sender.
  const [a, b, c] = await Promise.all([openSocket(wsUrl), openSocket(wsUrl), openSocket(wsUrl)])
  const frames = [
    { data: '{"type":"chat",  "text":"h\u00e9llo \ud83d\udc4b"}', binary: false },
    { data: '{"type":"log","from":"ws","n":1}', binary: false },
    { data: Buffer.from([0, 1, 2, 0xfe, 0xff]), binary: true },
  ]
  for (const f of frames) a.send(f.data, { binary: f.binary })
  sent.push(frames[1].data) // a log over the socket is stored like one over HTTP
  await waitFor(() => b.received.length === frames.length && c.received.length === frames.length, 10_000)
  for (const ws of [b, c]) {
    ws.received.forEach((got, i) => {
      assert.ok(got.data.equals(Buffer.from(frames[i].data)), `frame ${i} byte-identical`)
      assert.equal(got.isBinary, frames[i].binary)
    })
  }
  for (const ws of [a, b, c]) ws.close()

  // GET /stats: the service's periodic push; GET /metrics: Prometheus text of all of it.
  const stats = await waitFor(async () => {
    const r = await fetch(`${url}/stats`)
    return r.status === 200 && JSON.parse(await r.text())
  }, 10_000)
  assert.equal(stats.type, 'stats')
  assert.equal(typeof stats.server.latency.service.p99, 'number')
  const metrics = await fetch(`${url}/metrics`)
  assert.match(metrics.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const samples = parseMetrics(await metrics.text())
  assert.ok(samples.get('zerowire_client_sent') >= sent.length, 'the app client counted its sends')
  assert.ok(samples.has('zerowire_server_sink_rows'))
  assert.ok(samples.has('zerowire_server_latency_queue_wait_microseconds{quantile="0.99"}'))
  assert.ok(samples.has('app_event_loop_delay_microseconds{quantile="0.99"}'))

  // Ctrl-C: the app drains its client into the service, the service flushes SQLite, exit 0.
  demo.child.kill('SIGINT')
  const { code } = await demo.exited
  assert.equal(code, 0, demo.out.stderr)
  assert.match(demo.out.stdout, /app: stopped[\s\S]*service: stopped[\s\S]*demo: stopped/)

  const script = 'import json, sqlite3, sys; print(json.dumps([r[0] for r in sqlite3.connect(sys.argv[1]).execute("SELECT raw FROM logs")]))'
  const stored = JSON.parse(execFileSync(process.env.PYTHON || 'python3', ['-c', script, db], { encoding: 'utf8' }))
  assert.deepEqual(stored.sort(), sent.sort(), 'every log exactly once, byte for byte')
  fs.rmSync(dir, { recursive: true, force: true })
})
