'use strict'
// index.d.ts is written by hand over index.js: check that what it declares exists, so the two
// cannot drift apart silently.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { Client, Server, curveKeypair } = require('..')

const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')

function block (name) {
  const start = dts.indexOf(name + ' {')
  assert.notEqual(start, -1, `${name} is declared`)
  return dts.slice(start, dts.indexOf('\n}', start))
}

test('every Client method declared in index.d.ts exists', () => {
  const methods = [...block('declare class Client extends EventEmitter').matchAll(/^ {2}(\w+)\(/gm)].map((m) => m[1])
  assert.ok(methods.length >= 4)
  for (const m of methods) assert.equal(typeof Client.prototype[m], 'function', m)
})

test('ClientStats declares exactly the fields stats() returns', async () => {
  const declared = [...block('interface ClientStats').matchAll(/^ {2}(\w+):/gm)].map((m) => m[1]).sort()
  const c = new Client('ipc:///tmp/zerowire-types-never.sock', { lingerMs: 0 })
  const actual = Object.keys(c.stats()).sort()
  await c.close()
  assert.deepEqual(declared, actual)
})

test('every declared ClientOptions field is accepted', async () => {
  const fields = [...block('interface ClientOptions').matchAll(/^ {2}(\w+)\?:/gm)].map((m) => m[1])
  const strings = { name: 'typed', whenFull: 'drop-oldest', curve: { serverPublicKey: curveKeypair().publicKey } }
  const options = Object.fromEntries(fields.map((f) => [f, strings[f] ?? 1000]))
  const c = new Client('ipc:///tmp/zerowire-types-never.sock', { ...options, lingerMs: 0 })
  await c.close()
})

test('every Server method declared in index.d.ts exists; ServerStats matches stats()', async () => {
  const methods = [...block('declare class Server extends EventEmitter').matchAll(/^ {2}(\w+)\(/gm)].map((m) => m[1])
  assert.ok(methods.length >= 6)
  for (const m of methods) assert.equal(typeof Server.prototype[m], 'function', m)
  const declared = [...block('interface ServerStats').matchAll(/^ {2}(\w+):/gm)].map((m) => m[1]).sort()
  const s = new Server('tcp://127.0.0.1:0')
  assert.deepEqual(declared, Object.keys(s.stats()).sort())
  const fields = [...block('interface ServerOptions').matchAll(/^ {2}(\w+)\?:/gm)].map((m) => m[1])
  await s.close()
  const given = { typeField: 'kind', encoding: 'buffer', curve: curveKeypair(), authorize: [], insecure: false }
  const numeric = Object.fromEntries(fields.filter((f) => !(f in given)).map((f) => [f, 256]))
  const t = new Server('tcp://127.0.0.1:0', { ...numeric, ...given })
  await t.close()
})

test('a consumer\'s TypeScript compiles against index.d.ts: ws data sent without a cast, ZerowireError, await using, for await', () => {
  // __test__/types/consumer.ts, checked by tsc with @types/node and @types/ws (strict mode).
  const tsc = path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc')
  const r = require('node:child_process').spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stdout + r.stderr)
})

test('the symbol members index.d.ts declares exist: asyncDispose on both, asyncIterator on Client', () => {
  const dispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')
  for (const [name, cls] of [['Client', Client], ['Server', Server]]) {
    const declared = block(`declare class ${name} extends EventEmitter`)
    assert.match(declared, /\[Symbol\.asyncDispose\]\(\): Promise<void>/)
    assert.equal(typeof cls.prototype[dispose], 'function', `${name}[Symbol.asyncDispose]`)
  }
  assert.match(block('declare class Client extends EventEmitter'), /\[Symbol\.asyncIterator\]\(\)/)
  assert.equal(typeof Client.prototype[Symbol.asyncIterator], 'function')
})
