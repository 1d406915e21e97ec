// The service: a zerowire Server. `log` messages go from the socket to SQLite on Rust threads
// and never wake this JS thread; `time_request` is answered here; every connected app gets a
// `stats` push each second. Env: ZW_ENDPOINT, ZW_DB (the SQLite file), ZW_STATS_MS.
const { Server } = require('zerowire')

const { mkdtempSync } = require('node:fs')
const { join } = require('node:path')
const { tmpdir } = require('node:os')

// By default in a new directory only this user can enter (0700), not at a guessable path in /tmp.
const dir = process.env.ZW_ENDPOINT && process.env.ZW_DB ? '' : mkdtempSync(join(tmpdir(), 'zerowire-demo-'))
const endpoint = process.env.ZW_ENDPOINT || `ipc://${join(dir, 'zerowire-demo.sock')}`
const db = process.env.ZW_DB || join(dir, 'zerowire-demo.db')
const server = new Server(endpoint)

server.route('log').toSqlite(db) // table logs: id, received_at, client_id, raw
server.route('time_request', () => JSON.stringify({ now: new Date().toISOString() }))
server.on('connect', (clientId, info) => console.log(`service: client ${clientId} connected (${info.name || 'pid ' + info.pid})`))

const timer = setInterval(() => {
  server.broadcast(JSON.stringify({ type: 'stats', at: Date.now(), server: server.stats() }))
}, Number(process.env.ZW_STATS_MS || 1000))

async function stop () {
  clearInterval(timer)
  await server.close() // writes every log read so far, then closes the database
  console.log(`service: stopped, ${server.stats().sinkRows} logs written to ${db}`)
  process.exit(0)
}
// Under npm run demo the launcher stops the app first, then sends SIGTERM here.
process.on('SIGINT', process.send ? () => {} : stop)
process.on('SIGTERM', stop)
console.log(`service: listening on ${endpoint}, logs to ${db}`)
process.send?.('ready')
