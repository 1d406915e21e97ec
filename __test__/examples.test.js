'use strict'
// The README's commands and examples must stay true: the quick start runs against the demo
// service, and both are in the README verbatim (the full demo is __test__/e2e.test.js).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { ROOT, runNode, tmpEndpoint, waitFor } = require('./helpers')

test('the quick start runs against the demo service, whose SQLite sink stores its 1000 logs', async () => {
  const endpoint = tmpEndpoint()
  const db = path.join(path.dirname(endpoint.slice('ipc://'.length)), 'logs.db')
  const service = spawn(process.execPath, [path.join(ROOT, 'examples', 'service')], {
    env: { ...process.env, ZW_ENDPOINT: endpoint, ZW_DB: db },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  service.stdout.on('data', (d) => { out += d })
  const exited = new Promise((resolve) => service.once('exit', resolve))
  try {
    await waitFor(() => out.includes('service: listening'), 20_000)
    // quickstart.js takes its endpoint as its first argument, as `node examples/quickstart.js ipc://…`.
    const source = `process.argv[2] = ${JSON.stringify(endpoint)}; require(${JSON.stringify(path.join(ROOT, 'examples', 'quickstart.js'))})`
    const r = await runNode(source, { timeoutMs: 20_000 })
    assert.equal(r.timedOut, false)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /time reply: \{"now":"[\d-]+T[\d:.]+Z"\}/)
    assert.match(r.stdout, /sent: 1000/)
  } finally {
    service.kill('SIGTERM')
  }
  assert.equal(await exited, 0)
  assert.match(out, /client \w+ connected/)
  assert.match(out, /service: stopped, 1000 logs written to /)
})

test('the README examples are the example files verbatim, and the README names the real commands', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  for (const file of ['express-ws.js', 'quickstart.js', 'service/index.js']) {
    const example = fs.readFileSync(path.join(ROOT, 'examples', file), 'utf8')
    assert.ok(readme.includes('```js\n' + example + '```'), `README differs from examples/${file}`)
  }
  const scripts = require(path.join(ROOT, 'package.json')).scripts
  for (const cmd of readme.slice(0, readme.indexOf('## Install')).matchAll(/^npm (?:run )?([\w:-]+)/gm)) {
    if (cmd[1] !== 'install') assert.ok(scripts[cmd[1]], `README names npm ${cmd[1]}`)
  }
  const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8')
  assert.match(ci, /^(timeout .* )?npm test$/m, '.ci/run runs the README test command')
})
