'use strict'
// Options cross into Rust by name, from one table per wing (src/options.rs). These tests hold
// the typings to that table: every option index.d.ts declares is read by Rust, and reaches it
// (a value of the wrong kind is refused there, naming the option).
const test = require('node:test')
const assert = require('node:assert')
const fs = require('node:fs')
const path = require('node:path')

const native = require('../binding.js')
const { Client, Server } = require('..')
const { tmpEndpoint } = require('./helpers')

/** The property names of `interface name { … }` in index.d.ts. */
function declared (name) {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')
  const start = dts.indexOf(`export interface ${name} {`)
  assert.ok(start >= 0, `index.d.ts declares ${name}`)
  const body = dts.slice(start, dts.indexOf('\n}', start))
  return [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1])
}

test('every client option in index.d.ts is one Rust reads, and no other', () => {
  assert.deepStrictEqual(declared('ClientOptions').sort(), native.clientOptionNames().sort())
})

test('every server option in index.d.ts is one Rust reads, and no other', () => {
  assert.deepStrictEqual(declared('ServerOptions').sort(), native.serverOptionNames().sort())
})

test('each client option reaches Rust: a value of the wrong kind is refused, naming it', () => {
  for (const name of declared('ClientOptions')) {
    assert.throws(() => new Client('ipc:///tmp/zw-options-never-bound.sock', { [name]: {} }),
      (err) => err.message.includes(`options.${name}`) && typeof err.code === 'string', name)
  }
})

test('each server option reaches Rust: a value of the wrong kind is refused, naming it', () => {
  for (const name of declared('ServerOptions')) {
    assert.throws(() => new Server(tmpEndpoint(), { [name]: {} }),
      (err) => err.message.includes(`options.${name}`) && typeof err.code === 'string', name)
  }
})

test('options given in any order land on the right field', async () => {
  // Written in reverse of the table's order: a positional hand-off would shift them.
  const client = new Client('ipc:///tmp/zw-options-never-bound.sock', {
    lingerMs: 0, slowRequestMs: 7, whenFull: 'drop-oldest', sendHighWaterBytes: 4096, sendHighWaterMark: 3
  })
  let accepted = 0
  for (let i = 0; i < 10; i++) if (client.send('x')) accepted++
  // drop-oldest admits up to twice the message mark before refusing.
  assert.strictEqual(accepted, 6)
  await client.close()
})
