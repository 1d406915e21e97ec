'use strict'
// Soak benchmark (not a test): mixed send()/request() traffic against a zerowire Server in
// another process that is restarted every minute (alternately SIGKILL and a graceful close),
// for SOAK_MINUTES (default 10). Every ~10 s it prints client and server RSS, the client's
// event-loop delay (p50/p99/max over the interval), rates, request outcomes by code and the
// accounting; at the end it writes results/soak.json and results/soak.md. A tenth of the sends
// go to a toSqlite route: at the end the rows stored must equal the sends accepted for it,
// each exactly once, or the soak exits non-zero.
//
//   npm run soak                       # 10 minutes
//   SOAK_MINUTES=1 node bench/soak.js  # a quick check (also writes the results files)
//
// The server is this file run with --server: it counts what its handlers saw and reports the
// counts to us over the fork() IPC channel at the end of every event-loop turn in which they
// changed, so a SIGKILL loses at most the report of the last turn's messages.

const { fork, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { monitorEventLoopDelay } = require('node:perf_hooks')

const ROOT = path.join(__dirname, '..')

// ---------------------------------------------------------------------------------------------
// The server process.

function serverMain (endpoint, db) {
  const { Server } = require(ROOT)
  const server = new Server(endpoint)
  server.route('stored').toSqlite(db)
  let received = 0
  let redelivered = 0
  let requests = 0
  let scheduled = false
  const report = () => {
    scheduled = false
    process.send({ received, redelivered, requests })
  }
  const changed = () => {
    if (!scheduled) {
      scheduled = true
      setImmediate(report)
    }
  }
  server.route('log', (raw, ctx) => {
    received++
    if (ctx.redelivered) redelivered++
    changed()
  })
  server.route('req', (raw) => { requests++; changed(); return raw })
  server.on('message', () => { received++; changed() })
  process.on('SIGTERM', () => {
    server.close().then(() => process.send({ received, redelivered, requests, final: true }, () => process.exit(0)))
  })
  process.on('disconnect', () => process.exit(0)) // the soak died: do not outlive it
  process.send({ ready: true })
}

// ---------------------------------------------------------------------------------------------
// The client process: traffic, server restarts, reporting.

const MINUTES = Number(process.env.SOAK_MINUTES || process.argv[2] || 10)
const RESTART_EVERY_MS = Number(process.env.SOAK_RESTART_MS || 60_000)
const REPORT_EVERY_MS = 10_000
const DOWN_MS = 500 // how long the server stays away at each restart
const TICK_MS = 10
const SENDS_PER_TICK = 30 // ≈ 3000 sends/s of ~1 KiB
const STORED_EVERY = 10 // one send in this many goes to the toSqlite route
const REQUESTS_PER_TICK = 3 // ≈ 300 requests/s
const BURST_EVERY_MS = 15_000
const BURST = 20_000 // sends in one tick
const ACCOUNTING = ['sent', 'refused', 'delivered', 'dropped', 'droppedOverflow', 'droppedClosed', 'droppedPeerLost', 'inFlight']

const PAD = 'x'.repeat(1000)
const mb = (bytes) => (bytes === undefined ? 'n/a' : (bytes / 2 ** 20).toFixed(1))
const ms = (ns) => (ns / 1e6).toFixed(2)
// monitorEventLoopDelay records the time between its samples, so an idle loop reads the
// sampling interval itself (≈ 5 ms): we report what lies beyond it.
const ELD_RESOLUTION_MS = 5
const beyond = (ns) => Math.max(0, ns - ELD_RESOLUTION_MS * 1e6)
const num = (v) => (typeof v === 'number' ? v : 'n/a')

function serverRss (pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** The accounting fields of client.stats(), 'n/a' where this build does not have them yet. */
function accounting (s) {
  const a = {}
  // Until `delivered` exists, `sent` and `dropped` mean something else (accepted sends; sends
  // and requests dropped unwritten): show none of them rather than mix the two meanings.
  const fresh = typeof s.delivered === 'number'
  for (const k of ACCOUNTING) a[k] = fresh ? num(s[k]) : 'n/a'
  const have = fresh && ['sent', 'refused', 'delivered', 'dropped', 'inFlight'].every((k) => typeof s[k] === 'number')
  a.invariant = have
    ? (s.sent === s.delivered + s.refused + s.dropped + s.inFlight ? 'holds' : `BROKEN by ${s.sent - (s.delivered + s.refused + s.dropped + s.inFlight)}`)
    : 'n/a'
  return a
}

/** What the counters of today's build say (sends and requests together). */
function legacy (s) {
  const pushed = (s.sent ?? 0) + (s.requests ?? 0)
  return {
    written: num(s.written),
    lost: num(s.lost),
    droppedUnwritten: num(s.dropped),
    queued: num(s.queued),
    identity: typeof s.written === 'number'
      ? (pushed === s.written + s.dropped + s.queued ? 'sent+requests = written+dropped+queued holds' : `sent+requests - (written+dropped+queued) = ${pushed - (s.written + s.dropped + s.queued)}`)
      : 'n/a',
  }
}

async function main () {
  const { Client } = require(ROOT)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-soak-'))
  const endpoint = process.env.SOAK_ENDPOINT || `ipc://${path.join(dir, 'soak.sock')}`
  const db = path.join(dir, 'stored.db')
  const durationMs = MINUTES * 60_000
  const instances = [] // one per server process: { pid, start, end, how, received, requests }

  let server = null
  function startServer () {
    return new Promise((resolve, reject) => {
      const child = fork(__filename, ['--server', endpoint, db], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      const inst = { pid: child.pid, startS: elapsed(), endS: null, how: null, received: 0, redelivered: 0, requests: 0, final: false }
      instances.push(inst)
      const timer = setTimeout(() => reject(new Error('the server did not start in 10 s')), 10_000)
      child.on('message', (m) => {
        if (m.ready) {
          clearTimeout(timer)
          resolve()
          return
        }
        inst.received = m.received
        inst.redelivered = m.redelivered
        inst.requests = m.requests
        if (m.final) inst.final = true
      })
      child.on('exit', (code, signal) => {
        inst.endS = elapsed()
        inst.exit = signal || code
        if (server && server.child === child) server = null
      })
      child.exited = new Promise((resolve) => child.once('exit', resolve))
      // Its last IPC messages may arrive after 'exit': 'disconnect' comes after them.
      child.drained = new Promise((resolve) => child.once('disconnect', resolve))
      server = { child, inst }
    })
  }
  async function stopServer (how) {
    const { child, inst } = server
    inst.how = how
    child.kill(how === 'SIGKILL' ? 'SIGKILL' : 'SIGTERM')
    await Promise.all([child.exited, child.drained])
  }
  process.on('exit', () => { if (server) server.child.kill('SIGKILL') })

  const t0 = Date.now()
  const elapsed = () => Math.round((Date.now() - t0) / 1000)

  await startServer()
  const client = new Client(endpoint, { requestTimeoutMs: 2000, name: 'soak' })
  const events = { ready: 0, disconnect: 0 }
  const drops = {}
  client.on('ready', () => { events.ready++ })
  client.on('disconnect', () => { events.disconnect++ })
  client.on('drop', (d) => { drops[d.reason] = (drops[d.reason] || 0) + d.count })

  // Our own tally of calls, next to what the client's counters say.
  const own = { sendCalls: 0, sendAccepted: 0, sendRefused: 0, storedAccepted: 0, requests: 0, outcomes: {} }
  let interval = { sendCalls: 0, requests: 0, outcomes: {} }
  const outcome = (code) => {
    own.outcomes[code] = (own.outcomes[code] || 0) + 1
    interval.outcomes[code] = (interval.outcomes[code] || 0) + 1
  }
  let seq = 0
  let pendingRequests = 0
  let stored = 0
  function sendOne () {
    own.sendCalls++
    interval.sendCalls++
    // The stored ones are numbered apart, so the database can be checked for each of them.
    const body = own.sendCalls % STORED_EVERY === 0
      ? `{"type":"stored","n":${stored},"pad":"${PAD}"}`
      : `{"type":"log","seq":${seq++},"pad":"${PAD}"}`
    if (client.send(body)) {
      own.sendAccepted++
      if (body.startsWith('{"type":"stored"')) {
        own.storedAccepted++
        stored++
      }
    } else {
      own.sendRefused++
    }
  }
  function requestOne () {
    own.requests++
    interval.requests++
    pendingRequests++
    client.request(`{"type":"req","seq":${seq++}}`).then(
      () => outcome('ok'),
      (err) => outcome(err.code || err.name),
    ).finally(() => { pendingRequests-- })
  }

  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS })
  eld.enable()
  const samples = []
  let lastReport = Date.now()
  let restarts = 0
  let restarting = false
  const restartLog = []

  const serverTotals = () => instances.reduce((a, i) => ({ received: a.received + i.received, redelivered: a.redelivered + i.redelivered, requests: a.requests + i.requests }), { received: 0, redelivered: 0, requests: 0 })

  function report () {
    const now = Date.now()
    const secs = (now - lastReport) / 1000
    lastReport = now
    const s = client.stats()
    const sample = {
      t: elapsed(),
      clientRss: process.memoryUsage().rss,
      serverRss: server ? serverRss(server.child.pid) : undefined,
      eldP50: beyond(eld.percentile(50)),
      eldP99: beyond(eld.percentile(99)),
      eldMax: beyond(eld.max),
      sendsPerS: Math.round(interval.sendCalls / secs),
      requestsPerS: Math.round(interval.requests / secs),
      outcomes: interval.outcomes,
      accounting: accounting(s),
      server: serverTotals(),
    }
    sample.gap = own.sendAccepted - own.storedAccepted - sample.server.received // accepted, not (yet) counted by a server
    samples.push(sample)
    eld.reset()
    interval = { sendCalls: 0, requests: 0, outcomes: {} }
    const a = sample.accounting
    console.log(
      `[${String(sample.t).padStart(4)} s] rss client ${mb(sample.clientRss)} MB server ${mb(sample.serverRss)} MB | ` +
      `eld p50 ${ms(sample.eldP50)} p99 ${ms(sample.eldP99)} max ${ms(sample.eldMax)} ms | ` +
      `${sample.sendsPerS} send/s ${sample.requestsPerS} req/s ${JSON.stringify(sample.outcomes)} | ` +
      `sent ${a.sent} delivered ${a.delivered} refused ${a.refused} dropped ${a.dropped} inFlight ${a.inFlight} (${a.invariant}) | ` +
      `server got ${sample.server.received} | queued ${s.queued} restarts ${restarts}` +
      (Object.keys(drops).length ? ` | drop events ${JSON.stringify(drops)}` : ''),
    )
  }

  console.log(`soak: ${MINUTES} min against ${endpoint}, server restarted every ${RESTART_EVERY_MS / 1000} s ` +
    `(SIGKILL and graceful close in turn), ~${SENDS_PER_TICK * 1000 / TICK_MS} send/s of ~1 KiB, ` +
    `~${REQUESTS_PER_TICK * 1000 / TICK_MS} req/s, a ${BURST}-send burst every ${BURST_EVERY_MS / 1000} s`)

  let nextBurst = BURST_EVERY_MS / 2
  let nextRestart = RESTART_EVERY_MS + 5000 // between two reports, so each shows a live server
  let nextReport = REPORT_EVERY_MS
  await new Promise((resolve) => {
    const tick = setInterval(() => {
      const e = Date.now() - t0
      if (e >= durationMs) {
        clearInterval(tick)
        resolve()
        return
      }
      // Report first, so its queue figure is the backlog rather than this tick's sends.
      if (e >= nextReport) {
        nextReport += REPORT_EVERY_MS
        report()
      }
      for (let i = 0; i < SENDS_PER_TICK; i++) sendOne()
      for (let i = 0; i < REQUESTS_PER_TICK; i++) requestOne()
      if (e >= nextBurst) {
        nextBurst += BURST_EVERY_MS
        for (let i = 0; i < BURST; i++) sendOne()
      }
      if (e >= nextRestart && !restarting && e + DOWN_MS < durationMs) {
        nextRestart += RESTART_EVERY_MS
        restarting = true
        const how = restarts % 2 === 0 ? 'SIGKILL' : 'graceful'
        const at = elapsed()
        const before = samples.length
        stopServer(how)
          .then(() => new Promise((resolve) => setTimeout(resolve, DOWN_MS)))
          .then(startServer)
          .then(() => {
            restarts++
            restartLog.push({ atS: at, how, samplesBefore: before })
            restarting = false
          })
          .catch((err) => {
            console.error(err)
            process.exit(1)
          })
      }
    }, TICK_MS)
  })
  report()

  // Wind down: let the requests settle, close the client (drains to the live server), then
  // close the server gracefully so its last count is final.
  while (restarting) await new Promise((resolve) => setTimeout(resolve, 50))
  while (pendingRequests > 0) await new Promise((resolve) => setTimeout(resolve, 50))
  await client.close()
  const end = client.stats()
  await stopServer('graceful (end)')
  eld.disable()
  // Read back with python3's sqlite3, an independent reader of the file.
  const script = 'import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute("SELECT count(*), count(DISTINCT json_extract(raw, \'$.n\')) FROM logs").fetchone()))'
  const [rows, distinct] = JSON.parse(execFileSync(process.env.PYTHON || 'python3', ['-c', script, db], { encoding: 'utf8' }))
  const sink = { accepted: own.storedAccepted, rows, distinct, exact: rows === own.storedAccepted && distinct === rows }

  const result = summarize({ endpoint, instances, samples, own, end, events, drops, restarts, restartLog, sink })
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true })
  fs.writeFileSync(path.join(__dirname, 'results', 'soak.json'), JSON.stringify(result, null, 2) + '\n')
  const md = markdown(result)
  fs.writeFileSync(path.join(__dirname, 'results', 'soak.md'), md)
  console.log('\n' + md)
  console.log(`toSqlite route: ${sink.accepted} sends accepted, ${sink.rows} rows stored (${sink.distinct} distinct): ${sink.exact ? 'equal, each once' : 'NOT EQUAL'}`)
  fs.rmSync(dir, { recursive: true, force: true })
  if (!sink.exact) process.exitCode = 1
}

function summarize ({ endpoint, instances, samples, own, end, events, drops, restarts, restartLog, sink }) {
  const cpus = os.cpus()
  const range = (xs) => {
    const v = xs.filter((x) => typeof x === 'number')
    return v.length ? { min: Math.min(...v), max: Math.max(...v), end: v[v.length - 1] } : null
  }
  const total = instances.reduce((a, i) => ({ received: a.received + i.received, redelivered: a.redelivered + i.redelivered, requests: a.requests + i.requests }), { received: 0, redelivered: 0, requests: 0 })
  const acc = accounting(end)
  // At least once, never twice unmarked: every accepted log send was handled (all sends are
  // delivered and none dropped), and the handlings not marked redelivered are at most one per
  // send. (Delivered counts the stored ones too.)
  const logs = own.sendAccepted - own.storedAccepted
  const firsts = total.received - total.redelivered
  const relation = end.dropped === 0 && total.received >= logs && firsts <= logs
    ? `holds: ${logs} log sends accepted ≤ ${total.received} handled by the servers, of which ${firsts} unmarked ≤ ${logs} (${total.redelivered} marked redelivered); 0 dropped`
    : `VIOLATED: ${logs} log sends accepted, ${total.received} handled, ${firsts} unmarked, ${end.dropped} dropped`
  return {
    date: new Date().toISOString(),
    machine: {
      cpu: cpus[0] ? cpus[0].model : 'unknown',
      cores: cpus.length,
      memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      kernel: os.release(),
      loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)),
    },
    endpoint: endpoint.startsWith('ipc://') ? 'ipc://' : endpoint,
    minutes: MINUTES,
    load: {
      sendsPerS: SENDS_PER_TICK * 1000 / TICK_MS,
      requestsPerS: REQUESTS_PER_TICK * 1000 / TICK_MS,
      messageBytes: 1000 + 30,
      burst: BURST,
      burstEveryS: BURST_EVERY_MS / 1000,
      restartEveryS: RESTART_EVERY_MS / 1000,
      serverDownMs: DOWN_MS,
    },
    restarts,
    restartLog,
    clientEvents: events,
    rss: {
      client: range(samples.map((s) => s.clientRss)),
      server: range(samples.map((s) => s.serverRss)),
    },
    eldP99OverTimeMs: samples.map((s) => ({ t: s.t, p99: +(s.eldP99 / 1e6).toFixed(2), max: +(s.eldMax / 1e6).toFixed(2) })),
    own,
    requestOutcomes: own.outcomes,
    accounting: acc,
    dropEvents: drops,
    legacy: legacy(end),
    clientStatsAtEnd: end,
    serverInstances: instances,
    serverTotal: total,
    serverVsClient: relation,
    sink,
    unaccountedSends: own.sendAccepted - own.storedAccepted - total.received,
    samples,
  }
}

function markdown (r) {
  const f = (b) => (b / 2 ** 20).toFixed(1)
  const rssRow = (name, x) => (x ? `| ${name} | ${f(x.min)} | ${f(x.max)} | ${f(x.end)} |` : `| ${name} | n/a | n/a | n/a |`)
  const p99s = r.eldP99OverTimeMs.map((s) => s.p99)
  const kill = r.restartLog.filter((x) => x.how === 'SIGKILL').length
  const a = r.accounting
  const lines = [
    '# Soak',
    '',
    `${r.date.slice(0, 16).replace('T', ' ')} UTC, ${r.machine.cores}× ${r.machine.cpu}, Node ${r.machine.node}, ` +
      `Linux ${r.machine.kernel}; ${r.minutes} min over ${r.endpoint}; load average at the end ${r.machine.loadavgAtEnd.join(' ')} ` +
      '(a shared machine: other work ran alongside).',
    '',
    `Load: ~${r.load.sendsPerS} send()/s of ~1 KiB, ~${r.load.requestsPerS} request()/s (timeout 2 s), a ` +
      `${r.load.burst}-send burst every ${r.load.burstEveryS} s; the server (a zerowire Server in its own process) ` +
      `restarted every ${r.load.restartEveryS} s — ${r.restarts} restarts, ${kill} by SIGKILL and ` +
      `${r.restarts - kill} by graceful close — and away ${r.load.serverDownMs} ms each time. The client saw ` +
      `${r.clientEvents.disconnect} disconnects and ${r.clientEvents.ready} readies.`,
    '',
    '| RSS (MB) | min | max | end |',
    '|---|---|---|---|',
    rssRow('client', r.rss.client),
    rssRow('server (current process)', r.rss.server),
    '',
    `Client event-loop delay (beyond the 5 ms sampling interval of \`monitorEventLoopDelay\`), p99 per ` +
      `10 s interval (ms): ${p99s.join(', ')}; the highest single delay ` +
      `${Math.max(...r.eldP99OverTimeMs.map((s) => s.max)).toFixed(1)} ms.`,
    '',
    `Requests: ${r.own.requests} made; outcomes ${Object.entries(r.requestOutcomes).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    '',
    '| send() accounting (client.stats() after close) | count |',
    '|---|---|',
    ...['sent', 'delivered', 'refused', 'dropped', 'droppedOverflow', 'droppedClosed', 'droppedPeerLost', 'inFlight'].map((k) => `| ${k} | ${a[k]} |`),
    `| sent = delivered + refused + dropped + inFlight | ${a.invariant} |`,
    `| send() calls / accepted / refused (counted by the soak) | ${r.own.sendCalls} / ${r.own.sendAccepted} / ${r.own.sendRefused} |`,
    `| log sends counted by the server processes (sum; marked redelivered) | ${r.serverTotal.received} (${r.serverTotal.redelivered}) |`,
    `| log sends accepted − counted by the servers | ${r.unaccountedSends} |`,
    `| toSqlite sends accepted / rows stored / distinct | ${r.sink.accepted} / ${r.sink.rows} / ${r.sink.distinct} |`,

    '',
    `Server total vs client: ${r.serverVsClient}. The client replays what a server did not ack before ` +
      'it died; a restarted server hands such a message on marked redelivered (it cannot know whether ' +
      'the dead one handled it), hence at least once. The toSqlite route stores each exactly once: ' +
      `${r.sink.exact ? 'sent = stored' : 'SENT ≠ STORED'}.`,
    '',
  ]
  return lines.join('\n')
}

if (process.argv[2] === '--server') {
  serverMain(process.argv[3], process.argv[4])
} else {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
