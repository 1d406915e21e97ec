'use strict'
// `npm run demo`: starts the service (examples/service.js, a zerowire Server) on an ipc://
// socket in a temp dir, runs the quick start (examples/quickstart.js) against it, and stops
// everything.

const { fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerowire-demo-'))
const endpoint = `ipc://${path.join(dir, 'svc.sock')}`
const service = fork(path.join(__dirname, 'service.js'), [endpoint])
const cleanup = () => {
  service.kill('SIGTERM')
  service.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
}
process.on('SIGINT', () => { cleanup(); process.exit(130) })

service.once('message', () => {
  console.log(`service listening on ${endpoint}`)
  const quickstart = fork(path.join(__dirname, 'quickstart.js'), [endpoint])
  quickstart.on('exit', (code) => {
    cleanup()
    process.exitCode = code
  })
})
