'use strict'
// A zerowire Server for the fault scenarios (__test__/netns.test.js), run in its own process —
// inside a network namespace for tcp://. Counts 'log' messages, answers 'echo', never answers
// 'slow'. Control over stdin/stdout lines: prints "bound <endpoint>"; "count" → "count <n>".
// Exits when stdin closes, so it never outlives the test.
// Usage: node server.js <endpoint> [heartbeatTimeoutMs]

const readline = require('node:readline')
const path = require('node:path')
const { Server } = require(path.join(__dirname, '..', '..'))

const [endpoint, hb] = process.argv.slice(2)
// The namespace's veth address is not loopback, but the network is the test's own.
const server = new Server(endpoint, { insecure: true, ...(hb ? { heartbeatTimeoutMs: Number(hb) } : {}) })
let count = 0
server.route('log', () => { count++ })
server.route('echo', (raw) => raw)
server.route('slow', () => new Promise(() => {}))
console.log(`bound ${server.endpoint}`)

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (line === 'count') console.log(`count ${count}`)
})
rl.on('close', () => process.exit(0))
