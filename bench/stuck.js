'use strict'
// One stuck consumer and three honest clients against a zerowire Server, under broadcast and
// request load (`npm run bench:stuck`; not a test). The stuck one is a plain DEALER that says
// one thing and never reads again. Every 5 s this prints the honest clients' request round
// trip (p50/p99 over the window), the server's RSS and what it refused the stuck client: both
// the round trips and the RSS should stay flat however long it runs.
//
//   BENCH_STUCK_SECONDS=60 (default)  BENCH_STUCK_ENDPOINT=ipc://… (default: a temp ipc path)

const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { Client, Server } = require('..')
const { handshake, HI } = require('../__test__/peers/zmtp')

const SECONDS = Number(process.env.BENCH_STUCK_SECONDS) || 60
const endpoint = process.env.BENCH_STUCK_ENDPOINT ||
  `ipc://${path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'zw-stuck-')), 's.sock')}`


function percentile (sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN
}

async function main () {
  const server = new Server(endpoint)
  server.route('echo', (raw) => raw)
  const addr = endpoint.startsWith('ipc://')
    ? { path: endpoint.slice('ipc://'.length) }
    : { host: endpoint.slice(6).split(':')[0], port: Number(endpoint.split(':').pop()) }
  const stuck = net.connect(addr)
  stuck.on('error', () => {})
  await new Promise((resolve) => stuck.once('connect', resolve))
  stuck.pause()
  stuck.write(Buffer.concat([handshake(), HI]))

  const honest = [1, 2, 3].map((i) => new Client(server.endpoint, { name: `honest-${i}` }))
  await Promise.all(honest.map((c) => c.request('{"type":"echo"}')))
  let rtts = []
  let failed = 0
  let running = true
  const requester = async (c) => {
    while (running) {
      const t0 = process.hrtime.bigint()
      try {
        await c.request('{"type":"echo","pad":"' + 'x'.repeat(80) + '"}')
        rtts.push(Number(process.hrtime.bigint() - t0) / 1000)
      } catch {
        failed++
      }
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
  }
  const loops = honest.map(requester)
  // Broadcast load: ~20 000 small messages/s to everyone, the stuck client included.
  const body = '{"type":"tick","pad":"' + 'y'.repeat(100) + '"}'
  const broadcaster = setInterval(() => { for (let i = 0; i < 200; i++) server.broadcast(body) }, 10)

  console.log(`stuck consumer + 3 honest clients, ${SECONDS} s on ${endpoint.split(':')[0]}`)
  console.log('t (s)  requests  p50 (µs)  p99 (µs)  failed  server RSS (MiB)  peerRefused  peerQueued (MiB)')
  const started = Date.now()
  while (Date.now() - started < SECONDS * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 5000))
    const sorted = rtts.sort((a, b) => a - b)
    const s = server.stats()
    console.log([
      String(Math.round((Date.now() - started) / 1000)).padStart(5),
      String(sorted.length).padStart(9),
      percentile(sorted, 0.5).toFixed(0).padStart(9),
      percentile(sorted, 0.99).toFixed(0).padStart(9),
      String(failed).padStart(7),
      (process.memoryUsage().rss / 1048576).toFixed(1).padStart(17),
      String(s.peerRefused).padStart(12),
      (s.peerQueuedBytes / 1048576).toFixed(1).padStart(17),
    ].join(' '))
    rtts = []
  }
  running = false
  clearInterval(broadcaster)
  await Promise.all(loops)
  stuck.destroy()
  await Promise.all(honest.map((c) => c.close()))
  await server.close()
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
