'use strict'
// Load run: POST /log on the demo app at saturation, the app sending through zerowire and then
// through zeromq.js (bench/load/zeromq-client.js), both against the demo service (SQLite sink).
// autocannon drives from this process; the app and the service are child processes, all on the
// same cores. Writes bench/results/load.{json,md}.
//
//   node bench/load/run.js   (LOAD_SECONDS=20 LOAD_CONNECTIONS=64 LOAD_ROUNDS=2 by default)

const { fork, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const autocannon = require('autocannon')

const ROOT = path.join(__dirname, '..', '..')
const SECONDS = Number(process.env.LOAD_SECONDS || 20)
const CONNECTIONS = Number(process.env.LOAD_CONNECTIONS || 64)
const ROUNDS = Number(process.env.LOAD_ROUNDS || 2)
const WARMUP_SECONDS = 3
const BODY = '{"type":"log","level":"info","msg":"user 42 signed in","path":"/checkout","ms":12}'

function reply (child, message, key) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m && typeof m === 'object' && key in m) {
        child.off('message', onMessage)
        child.off('exit', onExit)
        resolve(m)
      }
    }
    const onExit = (code) => reject(new Error(`child exited (${code}) while waiting for ${key}`))
    child.on('message', onMessage)
    child.once('exit', onExit)
    if (message !== undefined) child.send(message)
  })
}

function load (url, duration) {
  return autocannon({
    url: `${url}/log`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: BODY,
    connections: CONNECTIONS,
    duration,
  })
}

async function runVariant (variant, endpoint) {
  const app = fork(path.join(__dirname, 'app.js'), [variant, endpoint], { stdio: 'inherit' })
  const { ready: url } = await reply(app, undefined, 'ready')
  const warm = await load(url, WARMUP_SECONDS)
  await reply(app, 'reset', 'reset')
  const r = await load(url, SECONDS)
  const during = await reply(app, 'read', 'eventLoopDelayMs')
  const { stopped } = await reply(app, 'stop', 'stopped')
  const result = {
    variant,
    requestsPerSec: Math.round(r.requests.average),
    latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
    eventLoopDelayMs: during.eventLoopDelayMs,
    accepted: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    warmupAccepted: warm['2xx'],
    appRssMb: during.rssMb,
    clientAtStop: stopped,
  }
  console.log(`${variant}: ${result.requestsPerSec} req/s, p99 ${result.latencyMs.p99} ms, event-loop delay p99 ${result.eventLoopDelayMs.p99.toFixed(2)} ms`)
  return result
}

const LABEL = { zerowire: 'zerowire `send()`', zeromq: 'zeromq.js 6 Dealer (awaited sends)' }

function median (values) {
  const v = [...values].sort((a, b) => a - b)
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2
}

function summarize (results) {
  return Object.keys(LABEL).map((variant) => {
    const runs = results.filter((r) => r.variant === variant)
    return {
      variant,
      requestsPerSec: Math.round(median(runs.map((r) => r.requestsPerSec))),
      latencyP99Ms: median(runs.map((r) => r.latencyMs.p99)),
      eventLoopDelayP99Ms: median(runs.map((r) => r.eventLoopDelayMs.p99)),
    }
  })
}

async function main () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-load-'))
  const endpoint = `ipc://${path.join(dir, 'svc.sock')}`
  const db = path.join(dir, 'logs.db')
  const service = fork(path.join(ROOT, 'examples', 'service'), [], {
    env: { ...process.env, ZW_ENDPOINT: endpoint, ZW_DB: db },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  await new Promise((resolve) => service.once('message', resolve))
  const results = []
  try {
    // Interleaved rounds, so neither variant always gets the warmer (or the noisier) slot.
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? ['zerowire', 'zeromq'] : ['zeromq', 'zerowire']
      for (const variant of order) results.push(await runVariant(variant, endpoint))
    }
  } finally {
    service.kill('SIGTERM')
    await new Promise((resolve) => service.once('exit', resolve))
  }
  // Every log the apps sent must be one row: the clients drained on stop, the service on
  // close. (autocannon's 2xx count misses the requests in flight when each run ends.)
  const rows = Number(execFileSync('python3', ['-c', 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM logs").fetchone()[0])', db], { encoding: 'utf8' }))
  const sent = results.reduce((n, r) => n + r.clientAtStop.sent, 0)
  fs.rmSync(dir, { recursive: true, force: true })

  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
    seconds: SECONDS,
    connections: CONNECTIONS,
    body: BODY,
    results,
    sqlite: { rows, sent, exactlyOnce: rows === sent },
    summary: summarize(results),
  }
  const out = path.join(ROOT, 'bench', 'results')
  fs.mkdirSync(out, { recursive: true })
  fs.writeFileSync(path.join(out, 'load.json'), JSON.stringify(report, null, 2) + '\n')
  const md = [
    `POST /log on the demo app (Express 5), ${CONNECTIONS} connections for ${SECONDS} s, autocannon, app and service on ${report.machine.cpus} cores with the load generator (${report.date.slice(0, 10)}, Node ${process.version}).`,
    '',
    '| app sends through | requests/s | latency p50 | latency p99 | event-loop delay p50 / p99 / max | errors |',
    '|---|---:|---:|---:|---:|---:|',
    ...results.map((r) => `| ${LABEL[r.variant]} | ${r.requestsPerSec} | ${r.latencyMs.p50} ms | ${r.latencyMs.p99} ms | ${r.eventLoopDelayMs.p50.toFixed(2)} / ${r.eventLoopDelayMs.p99.toFixed(2)} / ${r.eventLoopDelayMs.max.toFixed(1)} ms | ${r.errors + r.non2xx} |`),
    '',
    `Median of the ${ROUNDS} rounds: ${report.summary.map((s) => `${LABEL[s.variant]} ${s.requestsPerSec} req/s, p99 ${s.latencyP99Ms} ms, event-loop delay p99 ${s.eventLoopDelayP99Ms.toFixed(2)} ms`).join('; ')}.`,
    '',
    `SQLite rows after all runs: ${rows} for ${sent} logs the apps sent (${rows === sent ? 'each exactly once' : 'MISMATCH'}). Load average at the end: ${os.loadavg()[0].toFixed(1)}.`,
    '',
  ].join('\n')
  fs.writeFileSync(path.join(out, 'load.md'), md)
  console.log('\n' + md)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
