'use strict'
// One client in a process of its own, so that its CPU (all threads) and memory are its own:
// event-loop delay and CPU per message while it sends 1 KiB fire-and-forget messages at a fixed
// rate and at the highest rate it takes, then its RSS. Forked by run.js, which owns the server
// and answers "has the server counted N more messages?" over the IPC channel.
// Usage (forked by run.js): node bench/load.js <zerowire|zeromq.js|net> <address>

const fs = require('node:fs')
const net = require('node:net')
const { once } = require('node:events')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const { encodeFrame, KIND_COUNT } = require('./framing')

const [lib, address] = process.argv.slice(2)
const BODY = 'x'.repeat(1024)
const BIG = 'x'.repeat(1024 * 1024)
// The phases' lengths: long enough for a few thousand 1 ms samples of the loop's delay.
const IDLE_MS = 1000
const RATE_MS = 1000
const MAX_MS = 1000
const RATE_PER_S = 20_000
// At the highest rate the sender gives the event loop a turn every SLICE messages, as a server
// that sends while handling its own events would; the delay figure is what other callbacks wait.
const SLICE = 64
const BIG_MESSAGES = 64
// libuv's timers have 1 ms granularity: the finest the monitor can sample.
const RESOLUTION_MS = 1

const immediate = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let answer = null
process.on('message', (msg) => { if (msg.counted && answer) answer() })
process.on('disconnect', () => process.exit(0))
/** Resolves once the server has counted `count` more messages of `bytes` each. */
function counted (count, bytes) {
  return new Promise((resolve) => {
    answer = resolve
    process.send({ waitFor: count, bytes: count * bytes })
  })
}

/**
 * The three clients behind one shape: offer(body) → true when accepted at once, or a promise of
 * whether it was (no promise where the library needs none: zerowire's send() is synchronous).
 */
async function open () {
  if (lib === 'zerowire') {
    const { Client } = require('..')
    const client = new Client(address, { sendHighWaterMark: 100_000, sendHighWaterBytes: 256 * 2 ** 20 })
    return {
      // Refused at a high-water mark: wait for 'drain' (as `net` waits for its socket's), then
      // the caller offers it again.
      offer (body) { return client.send(body) || once(client, 'drain').then(() => false) },
      close: () => client.close(),
    }
  }
  if (lib === 'zeromq.js') {
    const zmq = require('zeromq')
    const dealer = new zmq.Dealer({ sendHighWaterMark: 100_000, linger: 1000 })
    dealer.connect(address)
    const empty = Buffer.alloc(0)
    return {
      // Its correct usage: every send awaited (an un-awaited second send throws EBUSY).
      offer (body) { return dealer.send([empty, body]).then(() => true) },
      close: () => dealer.close(),
    }
  }
  const sock = net.connect(address)
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject))
  return {
    offer (body) {
      return sock.write(encodeFrame(KIND_COUNT, body)) || new Promise((resolve) => sock.once('drain', () => resolve(true)))
    },
    close: () => sock.end(),
  }
}

const us = (ns) => ns / 1e3

/** One message offered until accepted. */
async function sendOne (client, body) {
  for (;;) {
    const r = client.offer(body)
    if (r === true || await r) return
  }
}

/**
 * The main thread's CPU time in µs (first field of /proc/thread-self/schedstat, read on this
 * thread), or null where there is none. Brought up to date at the next tick or switch: over a
 * phase of a second that lag is a few ms, well under 1 %.
 */
function mainCpuUs () {
  try {
    return Number(fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e3
  } catch {
    return null
  }
}

/** Runs `send` (which returns how many messages it sent) with the loop monitored. */
async function phase (send, bytes) {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  const cpu0 = process.cpuUsage()
  const main0 = mainCpuUs()
  const t0 = performance.now()
  h.enable()
  const n = await send()
  h.disable()
  const sendMs = performance.now() - t0
  if (n > 0) await counted(n, bytes)
  const cpu = process.cpuUsage(cpu0)
  const main1 = mainCpuUs()
  return {
    eldP50: us(h.percentile(50)),
    eldP99: us(h.percentile(99)),
    eldMax: us(h.max),
    eldSamples: h.count,
    messages: n,
    rate: n / (sendMs / 1e3),
    // Until the server counted the last one: the engine's (or libzmq's) threads included.
    cpuPerMsgUs: n > 0 ? (cpu.user + cpu.system) / n : null,
    // The main thread alone over the same span: all the work sending costs the application.
    mainCpuPerMsgUs: n > 0 && main0 !== null ? (main1 - main0) / n : null,
  }
}

async function main () {
  const client = await open()
  // Connected and warmed up before anything is timed.
  for (let i = 0; i < 2000; i++) await sendOne(client, BODY)
  await counted(2000, BODY.length)

  const idle = await phase(async () => { await sleep(IDLE_MS); return 0 }, 0)

  const fixed = await phase(async () => {
    let sent = 0
    const t0 = performance.now()
    while (performance.now() - t0 < RATE_MS) {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE_PER_S)
      for (; sent < due; sent++) {
        const r = client.offer(BODY)
        if (r !== true && !(await r)) await sendOne(client, BODY)
      }
      await sleep(1)
    }
    return sent
  }, BODY.length)

  const max = await phase(async () => {
    let sent = 0
    const t0 = performance.now()
    while (performance.now() - t0 < MAX_MS) {
      for (let i = 0; i < SLICE; i++) {
        const r = client.offer(BODY)
        if (r === true) sent++
        else if (await r) sent++
        else break
      }
      await immediate()
    }
    return sent
  }, BODY.length)

  // Large messages too, so the memory figure has seen them.
  for (let i = 0; i < BIG_MESSAGES; i++) await sendOne(client, BIG)
  await counted(BIG_MESSAGES, BIG.length)
  await sleep(100)
  const rssMiB = process.memoryUsage().rss / 2 ** 20
  // And once idle for a while, as a long-running app would be between bursts (zerowire gives
  // memory back after a quiet second; the others whenever their allocator does).
  await sleep(1500)
  const rssQuietMiB = process.memoryUsage().rss / 2 ** 20
  const peakRssMiB = process.resourceUsage().maxRSS / 1024
  await client.close()
  process.send({ result: { idle, fixed, max, rssMiB, rssQuietMiB, peakRssMiB } }, () => process.exit(0))
}

main().catch((err) => {
  console.error(`bench load.js (${lib}):`, err)
  process.exit(1)
})
