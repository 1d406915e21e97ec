'use strict'
// `npm run demo`: starts the service (examples/service) and the web app (examples/app), prints
// a session to paste, and on Ctrl-C stops the app (its client drains into the service), then
// the service (which flushes SQLite), and exits 0. Env: PORT, ZW_ENDPOINT, ZW_DB. By default the
// socket and the database go to a new directory of this user's (mode 0700) under the temporary
// directory: at a fixed path in a shared /tmp, another user could create the database first and
// read the logs, or bind the socket first and receive them. It is kept, with the logs, on exit.

const { fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const dir = process.env.ZW_ENDPOINT && process.env.ZW_DB ? null : fs.mkdtempSync(path.join(os.tmpdir(), 'zerowire-demo-'))
const env = {
  ...process.env,
  ZW_ENDPOINT: process.env.ZW_ENDPOINT || `ipc://${path.join(dir, 'zerowire-demo.sock')}`,
  ZW_DB: process.env.ZW_DB || path.join(dir, 'zerowire-demo.db'),
  PORT: process.env.PORT ?? '3000',
}

function start (name) {
  const child = fork(path.join(__dirname, name), [], { env })
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  return child
}

function stopped (child, signal) {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  return child.exited
}

let shuttingDown = false
async function shutdown () {
  if (shuttingDown) return
  shuttingDown = true
  const appCode = app ? await stopped(app, 'SIGINT') : 0
  const serviceCode = await stopped(service, 'SIGTERM')
  console.log(`demo: stopped; the logs are in ${env.ZW_DB}`)
  process.exit(appCode === 0 && serviceCode === 0 ? 0 : 1)
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)

const service = start('service')
let app
service.once('exit', () => shutdown())
service.once('message', () => {
  app = start('app')
  app.once('exit', () => shutdown())
  app.once('message', ({ ready: url }) => {
    console.log(`
demo: ready at ${url} — try, in another terminal:

  curl -i -X POST ${url}/log -d '{"type":"log","level":"info","msg":"hello"}'
  curl -i -X POST ${url}/log -d '{"type":"signup"}'      # not a log: 422
  curl ${url}/time
  curl ${url}/stats
  curl ${url}/metrics
  python3 -c 'import sqlite3; print(sqlite3.connect("${env.ZW_DB}").execute("SELECT * FROM logs ORDER BY id DESC LIMIT 3").fetchall())'
  npx wscat -c ws://${url.slice('http://'.length)}/ws   # frames go to the service and to the other browsers
  node examples/quickstart.js ${env.ZW_ENDPOINT}

Ctrl-C stops both processes.`)
  })
})
