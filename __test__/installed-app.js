'use strict'
// What an app that just installed zerowire does first: require it, say which addon file the
// process loaded, and a request round trip over ipc:// and over tcp://. Run from the scratch
// projects of __test__/install.test.js and .ci/cross.sh (arm64, under qemu).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Client, Server } = require('zerowire')

const mapped = fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
  .map((l) => l.split(/\s+/).slice(5).join(' ')).filter((f) => f.endsWith('.node'))
console.log(`${process.version} ${process.arch}: addon ${[...new Set(mapped)].join(', ')}`)
;(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-app-'))
  for (const ep of [`ipc://${path.join(dir, 's.sock')}`, 'tcp://127.0.0.1:0']) {
    const server = new Server(ep)
    server.route('ping', (raw) => `pong ${raw.length}`)
    // Generous: under qemu a first request takes seconds.
    const client = new Client(server.endpoint, { requestTimeoutMs: 30000 })
    const reply = await client.request('{"type":"ping"}')
    await client.close()
    await server.close()
    if (reply !== 'pong 15') throw new Error(`${ep} replied ${JSON.stringify(reply)}`)
    console.log(`${ep.slice(0, 3)} round trip ok`)
  }
  fs.rmSync(dir, { recursive: true, force: true })
})().catch((err) => { console.error(err); process.exit(1) })
