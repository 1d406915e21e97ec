'use strict'
// The README's first example (examples/express-ws.js) runs as printed: a POST and a WebSocket
// frame reach the service, and GET /time answers with the service's reply.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawn } = require('node:child_process')
const WebSocket = require('ws')
const { ROOT, waitFor } = require('./helpers')

test('examples/express-ws.js: POST and WebSocket messages reach the service, GET /time is answered', async () => {
  const app = spawn(process.execPath, [path.join(ROOT, 'examples', 'express-ws.js')], {
    env: { ...process.env, ZW_ENDPOINT: 'tcp://127.0.0.1:0', PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  app.stdout.on('data', (d) => { out += d })
  const exited = new Promise((resolve) => app.once('exit', (code, signal) => resolve(signal || code)))
  try {
    await waitFor(() => /listening on \d+/.test(out), 20_000)
    const base = `http://127.0.0.1:${/listening on (\d+)/.exec(out)[1]}`
    const post = await fetch(`${base}/events`, { method: 'POST', body: '{"type":"signup","user":"ada"}' })
    assert.equal(post.status, 202)
    const time = await fetch(`${base}/time`)
    assert.equal(time.status, 200)
    assert.match(await time.text(), /^\{"now":"[\d-]+T[\d:.]+Z"\}$/)
    const ws = new WebSocket(`${base.replace('http', 'ws')}/`)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    ws.send('{"type":"click","x":1}')
    await waitFor(() => out.includes('service got {"type":"click","x":1}'), 10_000)
    ws.close()
    assert.match(out, /service got \{"type":"signup","user":"ada"\}/)
  } finally {
    app.kill('SIGTERM')
  }
  assert.equal(await exited, 'SIGTERM')
})
