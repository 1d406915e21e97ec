'use strict'
// The README's commands and examples must stay true: the quick start runs against the demo
// service, and both are in the README verbatim (the full demo is __test__/e2e.test.js).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync, execFileSync } = require('node:child_process')
const { ROOT, runNode, tmpEndpoint, waitFor, scratchDir } = require('./helpers')

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

test('the demo prints the quick start command, which works as printed; POST /log answers 422 for what is not a log', async (t) => {
  // A fresh temporary directory stands for a shared /tmp: the demo's defaults live under it.
  const tmp = scratchDir('zw-demo-')
  fs.chmodSync(tmp, 0o1777)
  // Another user's database at a guessable path, created first to read the logs: not used.
  const planted = path.join(tmp, 'zerowire-demo.db')
  execFileSync('python3', ['-c', 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("CREATE TABLE logs (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, client_id TEXT NOT NULL, raw TEXT NOT NULL)"); c.commit()', planted])
  const env = { ...process.env, TMPDIR: tmp, PORT: '0', ZW_ENDPOINT: '', ZW_DB: '' }
  const demo = spawn(process.execPath, [path.join(ROOT, 'examples', 'demo.js')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { if (demo.exitCode === null) demo.kill('SIGKILL') })
  let out = ''
  demo.stdout.on('data', (d) => { out += d })
  const exited = new Promise((resolve) => demo.once('exit', resolve))
  const url = (await waitFor(() => out.match(/demo: ready at (http:\/\/[\d.]+:\d+)/), 30_000))[1]

  const printed = out.match(/^ *(node examples\/quickstart\.js (\S+))$/m)
  assert.ok(printed, `the demo prints the quick start command:\n${out}`)
  // Its socket and database are in a new directory only this user may enter.
  const dir = path.dirname(printed[2].slice('ipc://'.length))
  assert.equal(path.dirname(dir), tmp)
  assert.match(path.basename(dir), /^zerowire-demo-\w{6}$/)
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700)
  assert.equal(printed[2], `ipc://${path.join(dir, 'zerowire-demo.sock')}`)
  const db = path.join(dir, 'zerowire-demo.db')
  assert.ok(out.includes(`sqlite3.connect("${db}")`), 'the printed reader opens that database')
  for (let run = 0; run < 2; run++) {
    const r = spawnSync(process.execPath, printed[1].split(' ').slice(1), { cwd: ROOT, env, encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, `${printed[1]}: ${r.stderr}`)
    assert.match(r.stdout, /time reply: \{"now":"[\d-]+T[\d:.]+Z"\}/)
  }
  // Without an endpoint it says how to run it (there is no default to guess).
  const usage = spawnSync(process.execPath, ['examples/quickstart.js'], { cwd: ROOT, env, encoding: 'utf8', timeout: 20_000 })
  assert.equal(usage.status, 1)
  assert.match(usage.stderr, /usage: node examples\/quickstart\.js <endpoint>/)

  const post = async (body) => {
    const res = await fetch(`${url}/log`, { method: 'POST', body })
    return [res.status, await res.text()]
  }
  assert.deepEqual(await post('{"type":"log","msg":"first key"}'), [202, ''])
  assert.deepEqual(await post('{"msg":"a later key", "type" : "log"}'), [202, ''])
  for (const body of ['{"type":"signup"}', '{"msg":"no type"}', '{"data":{"type":"log"}}', '{"msg":"x","type":"time_request"}', 'not json', '{"type":"lo\\u0067"}']) {
    const [status, text] = await post(body)
    assert.equal(status, 422, `${body}: ${status} ${text}`)
    assert.match(text, /^not a log/)
  }

  demo.kill('SIGINT')
  assert.equal(await exited, 0)
  const script = 'import json, sqlite3, sys; print(json.dumps([r[0] for r in sqlite3.connect(sys.argv[1]).execute("SELECT raw FROM logs")]))'
  const rows = JSON.parse(execFileSync('python3', ['-c', script, db], { encoding: 'utf8' }))
  assert.deepEqual(JSON.parse(execFileSync('python3', ['-c', script, planted], { encoding: 'utf8' })), [], 'nothing went to the planted database')
  assert.deepEqual(rows.filter((raw) => !raw.includes('signed in')), ['{"type":"log","msg":"first key"}', '{"msg":"a later key", "type" : "log"}'])
  assert.equal(rows.length, 2002, 'the two quick start runs\' 1000 logs each, and the two POSTed logs')
})
