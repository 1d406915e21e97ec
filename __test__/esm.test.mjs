// The package works from ESM as well as CommonJS, with the same classes.
import test from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import zerowire, { Client } from '../index.mjs'

test('ESM named and default exports are the CommonJS classes', () => {
  const cjs = createRequire(import.meta.url)('../index.js')
  assert.equal(Client, cjs.Client)
  assert.equal(zerowire.Client, cjs.Client)
  const c = new Client('ipc:///tmp/zerowire-esm-never.sock', { lingerMs: 0 })
  assert.equal(c.send('x'), true)
  return c.close()
})
