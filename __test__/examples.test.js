'use strict'
// The README's commands and examples must stay true: run the demo, and check the quick start
// in the README is examples/quickstart.js verbatim (which the demo runs).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { ROOT, runNode } = require('./helpers')

test('npm run demo: the quick start runs against a local service and exits 0', async () => {
  const r = await runNode(`require(${JSON.stringify(path.join(ROOT, 'examples', 'demo.js'))})`, { timeoutMs: 20_000 })
  assert.equal(r.timedOut, false)
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /service listening on ipc:\/\//)
  assert.match(r.stdout, /client \w+ connected \(pid \d+\)/)
  assert.match(r.stdout, /time reply: \{"now":\d+,"logged":1000\}/)
  assert.match(r.stdout, /sent: 1000/)
})

test('the README examples are the example files verbatim, and the README names the real commands', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  for (const file of ['quickstart.js', 'service.js']) {
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
