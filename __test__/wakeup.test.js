'use strict'
// How often the JS thread sleeps per request round trip: once, waiting for the reply. A reply
// delivered through a threadsafe function made it sleep up to twice more (bench/NOTES.md, "Hops
// per request round trip"): woken by the engine, it blocked on a mutex the engine still held.
// A count of the kernel's, not a time: the same on a loaded machine.

const test = require('node:test')
const assert = require('node:assert')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { Client } = require('..')
const { tmpEndpoint } = require('./helpers')

const LINUX = process.platform === 'linux'

/** Voluntary context switches of this process's main thread so far. */
function mainThreadSleeps () {
  const status = fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/status`, 'utf8')
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1])
}

test('a request round trip puts the JS thread to sleep once, not on a lock the engine holds', { skip: !LINUX && 'reads /proc' }, async (t) => {
  const endpoint = tmpEndpoint()
  // The server in a process of its own, so only the client's wake-ups are in this thread.
  const server = spawn(process.execPath, ['-e', `
    const { Server } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const server = new Server(process.argv[1])
    server.on('message', (raw, ctx) => ctx.reply(raw))
    console.log('ready')
  `, endpoint], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => server.kill())
  await new Promise((resolve) => server.stdout.once('data', resolve))
  const client = new Client(endpoint)
  t.after(() => client.close())
  const body = 'x'.repeat(100)
  for (let i = 0; i < 300; i++) await client.request(body)
  const n = 3000
  const before = mainThreadSleeps()
  for (let i = 0; i < n; i++) assert.strictEqual(await client.request(body), body)
  const perRoundTrip = (mainThreadSleeps() - before) / n
  // Once per round trip, give or take a garbage collection; the threadsafe function's lock
  // made it 1.4–2.1 here.
  assert.ok(perRoundTrip <= 1.2, `the JS thread slept ${perRoundTrip.toFixed(2)} times per round trip`)
})
