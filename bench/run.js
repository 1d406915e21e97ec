'use strict'
// End-to-end benchmark of zerowire against zeromq.js 6, a hand-rolled Node `net` protocol and
// the native floor, interleaved in rounds on one machine. Servers run in processes of their own:
// - a native ROUTER (core/examples/bench_router.rs, the `zeromq` crate): a sink fast enough that
//   the client is what is measured;
// - "Node → Node" pairs, each library's client with its own server in Node: zerowire Client →
//   zerowire Server (zw_server.js, Buffer bodies; also once with strings), zeromq.js Dealer →
//   zeromq.js Router (server.js);
// - Node `net` on a Unix socket with length-prefixed frames (net_server.js, framing.js);
// - the floor: two native processes on a plain Unix socket (core/examples/uds_floor.rs);
// - each client alone in a process (load.js) for event-loop delay, CPU in all threads and RSS.
// Medians across rounds are reported (the machine is noisy), with per-round ratios in the JSON.
// At the end it writes results/latest.{json,md,svg} and the README table (readme.js, chart.js).
// See bench/README.md for what each figure means.
// Usage: node bench/run.js   (npm run bench; BENCH_ROUNDS=1 for a quick check)

const { fork, spawn } = require('node:child_process')
const { once } = require('node:events')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const zmq = require('zeromq')
const { Client, curveKeypair } = require('..')
const { encodeFrame, FrameReader, KIND_COUNT, KIND_ECHO } = require('./framing')
const { render, updateReadme } = require('./readme')
const { chart } = require('./chart')

const ROOT = path.join(__dirname, '..')
const ROUNDS = Number(process.env.BENCH_ROUNDS) || 5
const KIB = 1024
const MIB = 1024 * KIB
const RTT_WARMUP = 500
const RTT_SAMPLES = 5_000
// With 64 in flight a request costs less wall time each: more samples for the tail.
const INFLIGHT = 64
const INFLIGHT_WARMUP = 5_000
const INFLIGHT_SAMPLES = 50_000
const WAIT_TIMEOUT_MS = 60_000
// How long a server must see no message before it reports its final counts.
const QUIET_MS = 100
// The measured part must end well inside 8 minutes even if something stalls (the cargo build
// before it is not counted).
const TIME_BUDGET_MS = 420_000
const BUILD_TIMEOUT_MS = 600_000

const SIZES = [
  { tag: '100B', label: '100 B', bytes: 100 },
  { tag: '1KiB', label: '1 KiB', bytes: KIB },
  { tag: '10KiB', label: '10 KiB', bytes: 10 * KIB },
  { tag: '1MiB', label: '1 MiB', bytes: MIB },
]
const bodyOf = (bytes, kind) => kind === 'Buffer' ? Buffer.alloc(bytes, 'x') : 'x'.repeat(bytes)

// `batch` keeps every timed loop under zerowire's high-water marks (CLIENT_OPTIONS), so no
// send() is refused; the server must have counted a batch before the next one starts. Each
// timed batch should take well over 1 ms of main-thread time, because every CPU-clock reading
// carries a few tens of µs of noise (see makeClock); hence the 200-Buffer batches at 1 MiB,
// which zerowire and zeromq.js both send without copying.
const SEND_SHAPE = { '100B': [20_000, 20_000], '1KiB': [20_000, 20_000], '10KiB': [5_000, 5_000], '1MiB': [200, 25] }
const SEND_CASES = SIZES.flatMap((size) => ['string', 'Buffer'].map((kind) => {
  let [calls, batch] = SEND_SHAPE[size.tag]
  if (size.tag === '1MiB' && kind === 'Buffer') [calls, batch] = [800, 200]
  return { key: `send_${size.tag}_${kind}`, label: `${size.label} ${kind}`, kind, size, body: bodyOf(size.bytes, kind), calls, batch }
}))
// Fire-and-forget: N messages from the first send until the server has counted all of them.
const FIRE_MESSAGES = { '100B': 200_000, '1KiB': 200_000, '10KiB': 40_000, '1MiB': 300 }
const fireCase = (size, kind) => ({
  key: `fire_${size.tag}${kind === 'Buffer' ? '_Buffer' : ''}`,
  label: `${size.label}${kind === 'Buffer' ? ' Buffer' : ''}`,
  size,
  body: bodyOf(size.bytes, kind),
  messages: FIRE_MESSAGES[size.tag],
})
const FIRE_CASES = SIZES.map((size) => fireCase(size, 'string'))
const FIRE_BUFFER_CASES = SIZES.map((size) => fireCase(size, 'Buffer'))
const FIRE = Object.fromEntries(FIRE_CASES.map((c) => [c.size.tag, c]))
const FIRE_BUFFER = Object.fromEntries(FIRE_BUFFER_CASES.map((c) => [c.size.tag, c]))
const RTT_CASES = SIZES.slice(0, 2).map((size) => ({ key: `rtt_${size.tag}`, label: size.label, size, body: bodyOf(size.bytes, 'string') }))
const CLIENT_OPTIONS = {
  requestTimeoutMs: 5000,
  sendHighWaterMark: 100_000,
  sendHighWaterBytes: 256 * MIB,
  maxMessageBytes: 16 * MIB,
  lingerMs: 1000,
}
const EMPTY = Buffer.alloc(0)

const wallNs = () => process.hrtime.bigint()

// ---- main-thread CPU clock ----------------------------------------------------------------------
// Node 20 has no process.threadCpuUsage(). On Linux, the first field of /proc/thread-self/schedstat
// is the reading thread's on-CPU time in ns (read synchronously, so the main thread's). The kernel
// only brings that sum up to date at a scheduler event (a tick, a switch), so a plain read lags by
// up to one tick (4 ms at HZ=250: far more than a batch of 20 000 sends takes). Each reading is
// therefore taken right after a very short Atomics.wait(), which puts the thread to sleep: the
// switch out brings the sum up to date and the switch in restarts its accounting, so the value
// read a few µs later is exact to those µs. The context-switch count (third field) confirms the
// sleep happened; a reading where it did not is counted in `unsyncedReads`.

function makeClock () {
  const wall = {
    kind: 'wall',
    name: 'wall time, process.hrtime.bigint() (no per-thread CPU clock on this platform)',
    nowUs () { return Number(wallNs()) / 1e3 },
    waitUs: NaN,
    waitBeforeUs: NaN,
    overheadUs: 0,
    unsyncedReads: 0,
  }
  if (process.platform !== 'linux') return wall
  let fd
  try {
    fd = fs.openSync('/proc/thread-self/schedstat', 'r')
  } catch {
    return wall
  }
  const buf = Buffer.alloc(128)
  const flag = new Int32Array(new SharedArrayBuffer(4))
  const read = () => {
    const n = fs.readSync(fd, buf, 0, buf.length, 0)
    const f = buf.latin1Slice(0, n).trim().split(' ')
    return { ns: Number(f[0]), waitNs: Number(f[1]), switches: Number(f[2]) }
  }
  const cpu = {
    kind: 'cpu',
    name: 'main-thread CPU time, /proc/thread-self/schedstat (synchronised by a short Atomics.wait before each reading)',
    unsyncedReads: 0,
    // Time the thread spent runnable but waiting for a CPU (second field), as of the last
    // nowUs(): `waitUs` just after it (the start of an interval), `waitBeforeUs` just before its
    // own short sleep (the end of an interval), so the wake-up from that sleep is in neither.
    waitUs: 0,
    waitBeforeUs: 0,
    nowUs () {
      for (let tries = 0; ; tries++) {
        const before = read()
        if (tries === 0) cpu.waitBeforeUs = before.waitNs / 1e3
        Atomics.wait(flag, 0, 0, 0.05)
        const r = read()
        if (r.switches !== before.switches || tries === 4) {
          if (r.switches === before.switches) cpu.unsyncedReads++
          cpu.waitUs = r.waitNs / 1e3
          return r.ns / 1e3
        }
      }
    },
  }
  // Sanity check: a 5 ms busy loop must take (a little less than, if preempted) 5 ms of CPU.
  for (let attempt = 0; attempt < 3; attempt++) {
    const c0 = cpu.nowUs()
    const w0 = wall.nowUs()
    while (wall.nowUs() - w0 < 5000);
    const c = cpu.nowUs() - c0
    const w = wall.nowUs() - w0
    if (c > 0.3 * w && c < 1.05 * w + 200) {
      // The clock's own cost inside an interval (the reads and syscall entry and exit around
      // each sleep): the median of empty intervals, subtracted from every measured one.
      const empty = []
      for (let i = 0; i < 31; i++) {
        const e0 = cpu.nowUs()
        empty.push(cpu.nowUs() - e0)
      }
      cpu.overheadUs = empty.sort((a, b) => a - b)[15]
      cpu.unsyncedReads = 0
      return cpu
    }
  }
  wall.name = 'wall time, process.hrtime.bigint() (/proc/thread-self/schedstat failed its sanity check)'
  return wall
}
const clock = makeClock()

// ---- load from other processes ------------------------------------------------------------------
// The machine is shared: during each run, how many cores did processes other than this one and
// its servers keep busy, and how much time did the hypervisor steal? From /proc/stat and
// /proc/<pid>/stat, in clock ticks (USER_HZ, 100/s): coarse, but runs last seconds.

const TICKS_PER_S = 100

function readTicks (pids) {
  try {
    const f = fs.readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    const busy = f[0] + f[1] + f[2] + f[5] + f[6]
    let ours = 0
    for (const pid of pids) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1')
        const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        ours += Number(rest[11]) + Number(rest[12]) // utime, stime
      } catch {}
    }
    return { at: Number(wallNs()) / 1e9, busy, steal: f[7], ours }
  } catch {
    return null
  }
}

function otherLoad (a, b) {
  if (a === null || b === null) return {}
  const ticks = (b.at - a.at) * TICKS_PER_S
  return {
    other_cores: Math.max(0, (b.busy - a.busy) - (b.ours - a.ours)) / ticks,
    steal_cores: (b.steal - a.steal) / ticks,
  }
}

// ---- server processes -------------------------------------------------------------------------

const children = new Set()
let tmpDir = null

// Runs on every way out (done, error, signal, time budget): every path ends in process.exit().
function cleanup () {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue
    // cargo runs in a process group of its own: kill rustc with it.
    if (child.group) {
      try { process.kill(-child.pid, 'SIGKILL') } catch {}
    } else {
      child.kill('SIGKILL')
    }
  }
  children.clear()
  if (tmpDir !== null) fs.rmSync(tmpDir, { recursive: true, force: true })
}

const EXAMPLES = ['bench_router', 'uds_floor']

/** Builds the native peers (core/examples/) and returns their executables by name. */
async function buildExamples () {
  const args = ['build', '--release', '-p', 'zerowire-core', ...EXAMPLES.flatMap((e) => ['--example', e]), '--message-format=json-render-diagnostics']
  console.error(`bench: building the native peers (cargo ${args.slice(0, -1).join(' ')}); about a minute the first time…`)
  const child = spawn('cargo', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  child.group = true
  children.add(child)
  const executables = {}
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const m = JSON.parse(line)
      if (m.reason === 'compiler-artifact' && m.target && EXAMPLES.includes(m.target.name) && m.executable) executables[m.target.name] = m.executable
    } catch {}
  })
  const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), BUILD_TIMEOUT_MS)
  const code = await new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  clearTimeout(timer)
  children.delete(child)
  const missing = EXAMPLES.filter((e) => !executables[e])
  if (code !== 0 || missing.length > 0) throw new Error(`cargo build of ${missing.join(', ') || 'the examples'} failed (exit ${code})`)
  return executables
}

/**
 * Resolves with the next message from `messages` (an async queue); rejects if the server stays
 * silent too long.
 */
function replyQueue () {
  const queued = []
  let waiter = null
  return {
    push (msg) {
      if (waiter !== null) {
        const w = waiter
        waiter = null
        w(msg)
      } else {
        queued.push(msg)
      }
    },
    next (what) {
      if (queued.length > 0) return Promise.resolve(queued.shift())
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null
          reject(new Error(`timed out waiting for ${what}`))
        }, WAIT_TIMEOUT_MS)
        waiter = (msg) => {
          clearTimeout(timer)
          resolve(msg)
        }
      })
    },
  }
}

/**
 * A Node server (server.js, net_server.js): commands and counts over the fork() IPC channel.
 * `env` adds to its environment (BENCH_CURVE_SECRET).
 */
function forkServer (script, address, args = [], env = {}) {
  const child = fork(path.join(__dirname, script), [address, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } })
  const replies = replyQueue()
  child.on('message', (msg) => replies.push(msg))
  return {
    name: [script, ...args].join(' '),
    child,
    replies,
    waitFor (n) { child.send({ waitFor: n }) },
    quiet (ms) { child.send({ quietMs: ms }) },
  }
}

/** The native ROUTER: commands on its stdin, `ready` and then JSON counts on its stdout. */
function spawnRouter (executable, endpoint) {
  const child = spawn(executable, [endpoint], { stdio: ['pipe', 'pipe', 'inherit'] })
  const replies = replyQueue()
  // A write after the router died fails with EPIPE; its 'exit' ends the run anyway.
  child.stdin.on('error', () => {})
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    replies.push(line === 'ready' ? { ready: true } : JSON.parse(line))
  })
  return {
    name: 'bench_router',
    child,
    replies,
    waitFor (n) { child.stdin.write(`wait ${n}\n`) },
    quiet (ms) { child.stdin.write(`quiet ${ms}\n`) },
  }
}

async function startServer (server) {
  const { name, child, replies } = server
  children.add(child)
  // Every figure needs its server: one that dies ends the run instead of stalling it.
  child.once('exit', (code, signal) => {
    console.error(`bench: ${name} exited (${signal || code}), giving up`)
    process.exit(1)
  })
  const ready = await replies.next(`${name} to start`)
  // Counts only grow; waiting for a running total avoids resetting the server between figures.
  const expected = { count: 0, bytes: 0 }
  return {
    pid: child.pid,
    /** Where it is bound, when it said (a tcp port it picked). */
    endpoint: ready.endpoint,
    /** Waits until the server has counted `count` more fire-and-forget bodies. */
    async counted (count, bytes) {
      expected.count += count
      expected.bytes += bytes
      server.waitFor(expected.count)
      const got = await replies.next(`${name} to count ${expected.count} messages`)
      // A count past the target is settled() below; equal counts must carry equal bytes.
      if (got.count === expected.count && got.bytes !== expected.bytes) {
        throw new Error(`${name} counted ${got.bytes} B in ${got.count} messages, expected ${expected.bytes} B`)
      }
    },
    /**
     * Once the server has been quiet for QUIET_MS, returns how many messages it counted beyond
     * those sent (deliveries of one message more than once), then takes its counts as the new
     * baseline so the next figure starts exact.
     */
    async settled () {
      server.quiet(QUIET_MS)
      const got = await replies.next(`${name} to be quiet`)
      const surplus = got.count - expected.count
      expected.count = got.count
      expected.bytes = got.bytes
      return surplus
    },
  }
}

// ---- clients ----------------------------------------------------------------------------------
// Each adapter gives the figures one shape: sendBatch (main-thread time of a loop of sends),
// fire (hand N messages over, respecting back-pressure), drained (nothing left queued on the
// client side) and request (one round trip).

async function openZerowire (endpoint, curve) {
  const client = new Client(endpoint, curve ? { ...CLIENT_OPTIONS, curve: { serverPublicKey: curve.publicKey } } : CLIENT_OPTIONS)
  return {
    async sendBatch (body, n) {
      let refused = 0
      const c0 = clock.nowUs()
      const q0 = clock.waitUs
      const w0 = wallNs()
      for (let i = 0; i < n; i++) if (!client.send(body)) refused++
      const wLoop = wallNs()
      // send() stages the message; the tick's batch goes to the engine in a microtask queued by
      // the first send. Awaiting here runs that microtask first, so its cost is counted too.
      await undefined
      const w1 = wallNs()
      const c1 = clock.nowUs()
      // Batches are sized under the high-water marks; a refusal would make the figure meaningless.
      if (refused !== 0) throw new Error(`zerowire refused ${refused} of ${n} sends (stats: ${JSON.stringify(client.stats())})`)
      return { cpuUs: c1 - c0 - clock.overheadUs, wallUs: Number(w1 - w0) / 1e3, loopWallUs: Number(wLoop - w0) / 1e3, cpuWaitUs: clock.waitBeforeUs - q0 }
    },
    async fire (body, n) {
      // A full queue refuses; the client says when there is room again ('drain'), as the
      // `net` client below waits for its socket's.
      const refusedBefore = client.stats().refused
      for (let i = 0; i < n;) {
        if (client.send(body)) i++
        else await once(client, 'drain')
      }
      return { refused: client.stats().refused - refusedBefore }
    },
    async drained () {
      // Between figures nothing may be left queued, or the next batch could hit the HWMs.
      const deadline = Date.now() + WAIT_TIMEOUT_MS
      while (client.stats().queued !== 0) {
        if (Date.now() > deadline) throw new Error(`zerowire queue not drained: ${JSON.stringify(client.stats())}`)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    },
    request (body) {
      return client.request(body)
    },
    requestMany (body, total, inflight) {
      return concurrently(total, inflight, () => client.request(body))
    },
    close () {
      return client.close()
    },
  }
}

async function openZeromqJs (endpoint, curve) {
  // Under CURVE a fresh client key pair, as zerowire's Client makes when given none.
  const keys = curve ? curveKeypair() : null
  const dealer = new zmq.Dealer({
    sendHighWaterMark: CLIENT_OPTIONS.sendHighWaterMark,
    linger: CLIENT_OPTIONS.lingerMs,
    ...(curve ? { curveServerKey: curve.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey } : {}),
  })
  dealer.connect(endpoint)
  let nextCorr = 1
  return {
    async sendBatch (body, n) {
      // zeromq.js rejects a send while another is in progress (EBUSY): awaiting each one is the
      // correct usage, so what the main thread spends on the awaited loop is the cost of a send.
      const c0 = clock.nowUs()
      const q0 = clock.waitUs
      const w0 = wallNs()
      for (let i = 0; i < n; i++) await dealer.send([EMPTY, body])
      const w1 = wallNs()
      const c1 = clock.nowUs()
      const wallUs = Number(w1 - w0) / 1e3
      return { cpuUs: c1 - c0 - clock.overheadUs, wallUs, loopWallUs: wallUs, cpuWaitUs: clock.waitBeforeUs - q0 }
    },
    async fire (body, n) {
      for (let i = 0; i < n; i++) await dealer.send([EMPTY, body])
      return {}
    },
    // Every send was awaited, so whatever is still queued inside libzmq is on its way.
    async drained () {},
    async request (body) {
      const corr = Buffer.allocUnsafe(4)
      corr.writeUInt32LE(nextCorr++ >>> 0)
      await dealer.send([corr, body])
      const [replyCorr, reply] = await dealer.receive()
      if (!replyCorr.equals(corr)) throw new Error('zeromq.js: reply to another request')
      // zerowire's request() resolves with a string; decode here too so both do the same work.
      return reply.toString()
    },
    async requestMany (body, total, inflight) {
      // One send at a time (EBUSY otherwise) and one receive loop: a queue of sends in front of
      // the socket, as an application with many requests in flight needs with zeromq.js.
      const started = new Map()
      const waiting = []
      let wake = null
      let issued = 0
      const issue = () => {
        const corr = Buffer.allocUnsafe(4)
        corr.writeUInt32LE(nextCorr++ >>> 0)
        started.set(corr.readUInt32LE(0), wallNs())
        waiting.push(corr)
        issued++
        if (wake !== null) wake()
      }
      const sender = (async () => {
        for (let sent = 0; sent < total; sent++) {
          while (waiting.length === 0) await new Promise((resolve) => { wake = resolve })
          wake = null
          await dealer.send([waiting.shift(), body])
        }
      })()
      for (let i = 0; i < inflight; i++) issue()
      const samples = new Float64Array(total)
      for (let received = 0; received < total; received++) {
        const [corr, reply] = await dealer.receive()
        const id = corr.readUInt32LE(0)
        samples[received] = Number(wallNs() - started.get(id)) / 1e3
        started.delete(id)
        if (reply.toString() !== body) throw new Error('zeromq.js: wrong echo')
        if (issued < total) issue()
      }
      await sender
      return samples
    },
    close () {
      dealer.close()
    },
  }
}

async function openNet (socketPath) {
  const sock = net.connect(socketPath)
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject))
  // The server answers in order on one stream: the oldest waiting request gets the reply.
  const awaitingReply = []
  let head = 0
  const reader = new FrameReader((kind, body) => {
    const resolve = awaitingReply[head]
    awaitingReply[head++] = undefined
    if (head === awaitingReply.length) {
      awaitingReply.length = 0
      head = 0
    }
    resolve(body.toString())
  })
  sock.on('data', (chunk) => reader.push(chunk))
  return {
    async fire (body, n) {
      for (let i = 0; i < n; i++) {
        if (!sock.write(encodeFrame(KIND_COUNT, body))) await new Promise((resolve) => sock.once('drain', resolve))
      }
      return {}
    },
    async drained () {},
    request (body) {
      return new Promise((resolve) => {
        awaitingReply.push(resolve)
        sock.write(encodeFrame(KIND_ECHO, body))
      })
    },
    requestMany (body, total, inflight) {
      return concurrently(total, inflight, () => this.request(body))
    },
    close () {
      sock.destroy()
    },
  }
}

// ---- figures ----------------------------------------------------------------------------------

/** Lets everything sent reach the server; returns the number of surplus deliveries. */
async function settle (client, server) {
  await client.drained()
  return server.settled()
}

/**
 * Main-thread µs per send() call (CPU when available, and wall), after one untimed warm-up
 * batch, and the surplus deliveries seen.
 */
async function measureSend (client, server, c) {
  const bytes = Buffer.byteLength(c.body)
  const t = { cpuUs: 0, wallUs: 0, loopWallUs: 0, cpuWaitUs: 0 }
  for (let sent = -c.batch; sent < c.calls; sent += c.batch) {
    const b = await client.sendBatch(c.body, c.batch)
    if (sent >= 0) for (const k in t) t[k] += b[k]
    // The next batch starts on an idle client and server.
    await server.counted(c.batch, c.batch * bytes)
    await client.drained()
  }
  const surplus = await settle(client, server)
  return { us: t.cpuUs / c.calls, wallUs: t.wallUs / c.calls, loopWallUs: t.loopWallUs / c.calls, cpuWaitUs: t.cpuWaitUs / c.calls, surplus }
}

/**
 * Messages per second from the first send until the server has counted N messages, and the
 * surplus deliveries seen (if any, some of the N counted were copies: the rate is overstated).
 */
async function measureFire (client, server, c) {
  const t0 = wallNs()
  const info = await client.fire(c.body, c.messages)
  await server.counted(c.messages, c.messages * Buffer.byteLength(c.body))
  const seconds = Number(wallNs() - t0) / 1e9
  return { rate: c.messages / seconds, refused: info.refused, surplus: await settle(client, server) }
}

/** Nearest-rank percentiles of latency samples (µs). */
function percentiles (samples) {
  const sorted = Float64Array.from(samples).sort()
  const pct = (p) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]
  return { p50: pct(50), p99: pct(99), p999: pct(99.9), max: sorted[sorted.length - 1] }
}

/**
 * `total` calls of `request` (a promise of the echoed body), `inflight` at a time; returns the
 * latency of each, in order of completion.
 */
async function concurrently (total, inflight, request) {
  const samples = new Float64Array(total)
  let issued = 0
  let done = 0
  const worker = async () => {
    while (issued < total) {
      issued++
      const t0 = wallNs()
      await request()
      samples[done++] = Number(wallNs() - t0) / 1e3
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker))
  return samples
}

/** Round trips one request at a time: percentiles in µs. */
async function measureRoundTrip (client, body) {
  const samples = new Float64Array(RTT_SAMPLES)
  for (let i = 0; i < RTT_WARMUP + RTT_SAMPLES; i++) {
    const t0 = wallNs()
    const reply = await client.request(body)
    const us = Number(wallNs() - t0) / 1e3
    if (reply !== body) throw new Error(`wrong echo: ${JSON.stringify(reply).slice(0, 60)}`)
    if (i >= RTT_WARMUP) samples[i - RTT_WARMUP] = us
  }
  return percentiles(samples)
}

/** Round trips with INFLIGHT requests in flight: percentiles in µs and requests per second. */
async function measureInflight (client, body) {
  await client.requestMany(body, INFLIGHT_WARMUP, INFLIGHT)
  const t0 = wallNs()
  const samples = await client.requestMany(body, INFLIGHT_SAMPLES, INFLIGHT)
  const seconds = Number(wallNs() - t0) / 1e9
  return { ...percentiles(samples), rate: INFLIGHT_SAMPLES / seconds }
}

/** The native floor: one run of uds_floor, its JSON keyed like the other runs' figures. */
async function runFloor (executable) {
  const child = spawn(executable, [], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  let out = ''
  child.stdout.on('data', (d) => { out += d })
  const code = await new Promise((resolve) => child.once('close', resolve))
  children.delete(child)
  if (code !== 0) throw new Error(`uds_floor exited with ${code}`)
  const f = JSON.parse(out)
  const r = {}
  for (const size of SIZES) {
    const stream = f.stream[size.bytes]
    if (stream) r[`fire_${size.tag}`] = stream.rate
    const rtt = f.rtt[size.bytes]
    if (rtt) for (const p of ['p50', 'p99', 'p999', 'max']) r[`rtt_${size.tag}_${p}`] = rtt[p]
  }
  return r
}

/**
 * One client alone in a process (load.js) against `server`: event-loop delay, CPU per message
 * in all its threads, RSS. It asks for server counts over its IPC channel.
 */
async function runLoad (lib, server, address) {
  const child = fork(path.join(__dirname, 'load.js'), [lib, address], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  const result = await new Promise((resolve, reject) => {
    child.on('message', (msg) => {
      if (msg.result) resolve(msg.result)
      else if (typeof msg.waitFor === 'number') server.counted(msg.waitFor, msg.bytes).then(() => child.send({ counted: true }), reject)
    })
    child.once('exit', (code) => reject(new Error(`load.js ${lib} exited (${code}) before its result`)))
  })
  await new Promise((resolve) => child.exitCode !== null ? resolve() : child.once('exit', resolve))
  children.delete(child)
  const r = { rss_MiB: result.rssMiB, rss_quiet_MiB: result.rssQuietMiB, rss_peak_MiB: result.peakRssMiB }
  for (const phase of ['idle', 'fixed', 'max']) {
    const p = result[phase]
    for (const k of ['eldP50', 'eldP99', 'eldMax']) r[`eld_${phase}_${k.slice(3).toLowerCase()}`] = p[k]
    if (phase !== 'idle') {
      r[`load_${phase}_rate`] = p.rate
      r[`load_${phase}_cpu`] = p.cpuPerMsgUs
      r[`load_${phase}_main_cpu`] = p.mainCpuPerMsgUs
    }
  }
  r.surplus = await server.settled()
  return r
}

// ---- runs -------------------------------------------------------------------------------------
// A run is one client against one server; each round runs every one once, interleaved, each on a
// fresh connection. `send`/`fire`/`rtt`/`inflight` say which figures it measures. Servers:
// `router` the native ROUTER, `node` the zeromq.js Router in Node (server.js), `zwserver` the
// zerowire Server in Node handing Buffers (zw_server.js buffer), `zwserverUtf8` the same handing
// strings, `net` the raw baseline. `floor` runs are uds_floor; `load` runs are load.js.

const CURVE_RUNS = [
  { id: 'zerowire@zwserver-tcp', open: 'zerowire', server: 'zwserverTcp', fire: [FIRE['1KiB']], rtt: RTT_CASES.slice(0, 1), inflight: [] },
  { id: 'zerowire@zwserver-curve', open: 'zerowire', server: 'zwserverCurve', curve: true, fire: [FIRE['1KiB']], rtt: RTT_CASES.slice(0, 1), inflight: [] },
  { id: 'zeromq.js@node-tcp', open: 'zeromq.js', server: 'nodeTcp', fire: [FIRE['1KiB']], rtt: RTT_CASES.slice(0, 1), inflight: [] },
  { id: 'zeromq.js@node-curve', open: 'zeromq.js', server: 'nodeCurve', curve: true, fire: [FIRE['1KiB']], rtt: RTT_CASES.slice(0, 1), inflight: [] },
]
const RUNS = [
  { id: 'zerowire', open: 'zerowire', server: 'router', send: true, fire: [...FIRE_CASES, ...FIRE_BUFFER_CASES], rtt: RTT_CASES, inflight: RTT_CASES },
  { id: 'zeromq.js', open: 'zeromq.js', server: 'router', send: true, fire: FIRE_CASES, rtt: RTT_CASES, inflight: RTT_CASES },
  { id: 'net', open: 'net', server: 'net', fire: [...FIRE_CASES, FIRE_BUFFER['1MiB']], rtt: RTT_CASES, inflight: RTT_CASES },
  { id: 'floor', floor: true },
  { id: 'zerowire@zwserver', open: 'zerowire', server: 'zwserver', fire: [...FIRE_CASES, FIRE_BUFFER['1MiB']], rtt: RTT_CASES, inflight: RTT_CASES },
  { id: 'zeromq.js@node', open: 'zeromq.js', server: 'node', fire: [...FIRE_CASES, FIRE_BUFFER['1MiB']], rtt: RTT_CASES, inflight: RTT_CASES },
  { id: 'zerowire@zwserver-utf8', open: 'zerowire', server: 'zwserverUtf8', fire: [FIRE['1KiB'], FIRE['1MiB']], rtt: RTT_CASES.slice(0, 1), inflight: [] },
  // CURVE against plaintext over tcp://127.0.0.1, Node → Node: what encryption costs each
  // library, and zerowire against zeromq.js with CURVE on both sides.
  ...CURVE_RUNS,
  { id: 'load:zerowire', load: 'zerowire', server: 'router' },
  { id: 'load:zeromq.js', load: 'zeromq.js', server: 'router' },
  { id: 'load:net', load: 'net', server: 'net' },
]
const OPEN = { zerowire: openZerowire, 'zeromq.js': openZeromqJs, net: openNet }
// The CURVE servers' long-term key pair (zerowire's and zeromq.js's alike), made for this run.
const CURVE_SERVER_KEYS = curveKeypair()

async function runOnce (run, servers, addresses, executables) {
  const t0 = wallNs()
  if (run.floor) return { ...await runFloor(executables.uds_floor), seconds: Number(wallNs() - t0) / 1e9 }
  const server = servers[run.server]
  if (run.load) return { ...await runLoad(run.load, server, addresses[run.server]), seconds: Number(wallNs() - t0) / 1e9 }
  const pids = [process.pid, ...[...children].map((c) => c.pid)]
  const load0 = readTicks(pids)
  const client = await OPEN[run.open](addresses[run.server], run.curve ? CURVE_SERVER_KEYS : undefined)
  const r = {}
  let surplus = 0
  for (const c of run.send ? SEND_CASES : []) {
    const m = await measureSend(client, server, c)
    r[c.key] = m.us
    r[`${c.key}_wall`] = m.wallUs
    if (run.open === 'zerowire') r[`${c.key}_loop_wall`] = m.loopWallUs
    // µs per call the main thread was runnable but had no CPU (NaN without schedstat).
    r[`${c.key}_cpu_wait`] = m.cpuWaitUs
    surplus += m.surplus
  }
  let fireSurplus = 0
  for (const c of run.fire) {
    const fire = await measureFire(client, server, c)
    r[c.key] = fire.rate
    // zerowire only: sends refused at a high-water mark (and retried after setImmediate).
    if (fire.refused !== undefined) r[`${c.key}_refused`] = fire.refused
    r[`${c.key}_surplus`] = fire.surplus
    fireSurplus += fire.surplus
  }
  r.fire_surplus = fireSurplus
  r.surplus = surplus + fireSurplus
  for (const c of run.rtt) {
    const m = await measureRoundTrip(client, c.body)
    for (const p of ['p50', 'p99', 'p999', 'max']) r[`${c.key}_${p}`] = m[p]
  }
  for (const c of run.inflight) {
    const m = await measureInflight(client, c.body)
    for (const p of ['p50', 'p99', 'p999', 'max', 'rate']) r[`inflight_${c.size.tag}_${p}`] = m[p]
  }
  await client.close()
  Object.assign(r, otherLoad(load0, readTicks(pids)))
  r.seconds = Number(wallNs() - t0) / 1e9
  return r
}

// ---- report -----------------------------------------------------------------------------------

// The table's figures in order, each in a section (readme.js starts a bold row where the
// section changes). `cols` gives the [run, key] behind each column (a list of them for summed
// rows); `parts` splits a cell into several values (percentiles); `unit` and `better` are for
// the reader; `bytes` (fire-and-forget) adds MB/s to the cells.
const S_SEND = 'send(): main-thread CPU µs per call, against the native ROUTER'
const S_FIRE = 'Fire-and-forget, end to end: ZeroMQ clients → native ROUTER (client cost); net → its Node server; floor: two native processes'
const S_FIRE_PAIRS = 'Fire-and-forget, Node → Node: zerowire Client → zerowire Server (`encoding: \'buffer\'`) vs zeromq.js Dealer → zeromq.js Router'
const S_RTT = 'Request round trip µs, p50 / p99 / p99.9: ZeroMQ clients → native ROUTER (echo); net → its Node server; floor: native ping-pong'
const S_RTT_PAIRS = 'Request round trip µs, p50 / p99 / p99.9, Node → Node (same pairs as above)'
const S_CURVE = 'CURVE over tcp://127.0.0.1, Node → Node: zerowire Client → zerowire Server (`encoding: \'buffer\'`) vs zeromq.js Dealer → zeromq.js Router, plaintext and CURVE'
const S_LOAD = 'One client alone in a process, 1 KiB fire-and-forget (ZeroMQ clients → native ROUTER, net → its Node server)'
const PCT = ['p50', 'p99', 'p999']
const ELD = ['p50', 'p99', 'max']
const SURPLUS_RUNS = RUNS.filter((r) => !r.floor)

const cols4 = (zw, zj, key, { net = true, floor = true } = {}) => ({
  zerowire: [zw, key],
  'zeromq.js': [zj, key],
  ...(net ? { net: ['net', key] } : {}),
  ...(floor ? { floor: ['floor', key] } : {}),
})
const fireRow = (section, id, c, cols) => ({ section, id, label: `fire-and-forget ${c.label}`, unit: 'msg/s', better: 'higher', bytes: c.size.bytes, cols })
const rttRows = (section, prefix, zw, zj) => [
  ...RTT_CASES.map((c) => ({ section, id: `${prefix}rtt_${c.size.tag}`, label: `${c.label}, one at a time`, unit: 'µs', better: 'lower', parts: PCT, cols: cols4(zw, zj, c.key) })),
  ...RTT_CASES.map((c) => ({ section, id: `${prefix}inflight_${c.size.tag}`, label: `${c.label}, ${INFLIGHT} in flight`, unit: 'µs', better: 'lower', parts: PCT, cols: cols4(zw, zj, `inflight_${c.size.tag}`, { floor: false }) })),
  ...RTT_CASES.map((c) => ({ section, id: `${prefix}inflight_${c.size.tag}_rate`, label: `${c.label}, ${INFLIGHT} in flight: requests/s`, unit: 'req/s', better: 'higher', cols: cols4(zw, zj, `inflight_${c.size.tag}_rate`, { floor: false }) })),
]
const CURVE_FIGURES = ['tcp', 'curve'].flatMap((mode) => [
  { ...fireRow(S_CURVE, `${mode}_fire_1KiB`, FIRE['1KiB'], { zerowire: [`zerowire@zwserver-${mode}`, 'fire_1KiB'], 'zeromq.js': [`zeromq.js@node-${mode}`, 'fire_1KiB'] }), label: `fire-and-forget 1 KiB, ${mode === 'tcp' ? 'plaintext' : 'CURVE'}` },
  { section: S_CURVE, id: `${mode}_rtt_100B`, label: `request round trip 100 B, one at a time, ${mode === 'tcp' ? 'plaintext' : 'CURVE'}`, unit: 'µs', better: 'lower', parts: PCT, cols: { zerowire: [`zerowire@zwserver-${mode}`, 'rtt_100B'], 'zeromq.js': [`zeromq.js@node-${mode}`, 'rtt_100B'] } },
])
const loadCols = (key) => ({ zerowire: ['load:zerowire', key], 'zeromq.js': ['load:zeromq.js', key], net: ['load:net', key] })
const FIGURES = [
  ...SEND_CASES.map((c) => ({ section: S_SEND, id: c.key, label: `send() ${c.label}`, unit: 'µs/call', better: 'lower', cols: cols4('zerowire', 'zeromq.js', c.key, { net: false, floor: false }) })),
  ...FIRE_CASES.map((c) => fireRow(S_FIRE, c.key, c, cols4('zerowire', 'zeromq.js', c.key))),
  ...FIRE_BUFFER_CASES.map((c) => fireRow(S_FIRE, c.key, c, { zerowire: ['zerowire', c.key] })),
  ...FIRE_CASES.map((c) => fireRow(S_FIRE_PAIRS, `pair_${c.key}`, c, cols4('zerowire@zwserver', 'zeromq.js@node', c.key))),
  fireRow(S_FIRE_PAIRS, 'pair_fire_1MiB_Buffer', FIRE_BUFFER['1MiB'], cols4('zerowire@zwserver', 'zeromq.js@node', 'fire_1MiB_Buffer', { floor: false })),
  ...[FIRE['1KiB'], FIRE['1MiB']].map((c) => ({ ...fireRow(S_FIRE_PAIRS, `pair_utf8_${c.key}`, c, { zerowire: ['zerowire@zwserver-utf8', c.key], 'zeromq.js': ['zeromq.js@node', c.key] }), label: `fire-and-forget ${c.label}, zerowire Server handing strings` })),
  ...rttRows(S_RTT, '', 'zerowire', 'zeromq.js'),
  ...rttRows(S_RTT_PAIRS, 'pair_', 'zerowire@zwserver', 'zeromq.js@node'),
  ...CURVE_FIGURES,
  { section: S_LOAD, id: 'eld_idle', label: 'event-loop delay, idle loop (1 ms timer)', unit: 'µs', better: 'lower', parts: ELD, cols: loadCols('eld_idle') },
  { section: S_LOAD, id: 'eld_fixed', label: 'event-loop delay, sending 20 k msg/s', unit: 'µs', better: 'lower', parts: ELD, cols: loadCols('eld_fixed') },
  { section: S_LOAD, id: 'eld_max', label: 'event-loop delay, sending at the highest rate', unit: 'µs', better: 'lower', parts: ELD, cols: loadCols('eld_max') },
  { section: S_LOAD, id: 'load_max_rate', label: 'highest rate (yielding every 64 sends)', unit: 'msg/s', better: 'higher', cols: loadCols('load_max_rate') },
  { section: S_LOAD, id: 'load_fixed_cpu', label: 'client CPU per message, all threads, at 20 k msg/s', unit: 'µs', better: 'lower', cols: loadCols('load_fixed_cpu') },
  { section: S_LOAD, id: 'load_max_cpu', label: 'client CPU per message, all threads, at the highest rate', unit: 'µs', better: 'lower', cols: loadCols('load_max_cpu') },
  { section: S_LOAD, id: 'load_max_main_cpu', label: 'main-thread CPU per message at the highest rate (all its work / messages)', unit: 'µs', better: 'lower', cols: loadCols('load_max_main_cpu') },
  { section: S_LOAD, id: 'client_rss', label: 'client RSS after the run (then 64 × 1 MiB): at once / after 1.5 s idle / peak', unit: 'MiB', better: 'lower', parts: ['MiB', 'quiet_MiB', 'peak_MiB'], cols: loadCols('rss') },
  { section: S_LOAD, id: 'server_rss', label: 'server RSS after all rounds (Node → Node servers), now / peak', unit: 'MiB', better: 'lower', parts: ['MiB', 'peak_MiB'], cols: { zerowire: ['servers', 'zwserver'], 'zeromq.js': ['servers', 'node'], net: ['servers', 'net'] } },
  // Not a speed: messages a server received more often than they were sent, over all figures
  // and rounds. Anything but 0 is a delivery bug in that client (or server).
  {
    section: S_LOAD,
    id: 'surplus',
    label: 'surplus deliveries, all runs and rounds',
    unit: 'messages',
    better: 'must be 0',
    sum: true,
    cols: Object.fromEntries(['zerowire', 'zeromq.js', 'net'].map((lib) => [lib, SURPLUS_RUNS.filter((r) => (r.open || r.load) === lib).map((r) => [r.id, 'surplus'])])),
  },
]

// The issue's targets, each checked on the figures above.
const T = (id, col, part) => (s) => {
  const v = s[id][col]
  return part === undefined ? v : v[FIGURES.find((f) => f.id === id).parts.indexOf(part)]
}
const zw = (id, part) => T(id, 'zerowire', part)
const zj = (id, part) => T(id, 'zeromq.js', part)
const onNet = (id, part) => T(id, 'net', part)
const TARGETS = [
  ...RTT_CASES.map(({ size }) => ({ label: `request p50 and p99, ${size.label} one at a time (Node → Node) ≤ net's`, ok: (s) => zw(`pair_rtt_${size.tag}`, 'p50')(s) <= onNet(`pair_rtt_${size.tag}`, 'p50')(s) && zw(`pair_rtt_${size.tag}`, 'p99')(s) <= onNet(`pair_rtt_${size.tag}`, 'p99')(s) })),
  { label: `requests/s, 100 B, ${INFLIGHT} in flight (Node → Node) ≥ 2 × net`, ok: (s) => zw('pair_inflight_100B_rate')(s) >= 2 * onNet('pair_inflight_100B_rate')(s) },
  { label: 'fire-and-forget 1 MiB strings and Buffers (Node → Node) ≥ zeromq.js', ok: (s) => zw('pair_fire_1MiB')(s) >= zj('pair_fire_1MiB')(s) && zw('pair_fire_1MiB_Buffer')(s) >= zj('pair_fire_1MiB_Buffer')(s) },
  ...SIZES.slice(0, 2).map(({ tag, label }) => ({ label: `fire-and-forget ${label} (Node → Node) ≥ 4 × zeromq.js`, ok: (s) => zw(`pair_fire_${tag}`)(s) >= 4 * zj(`pair_fire_${tag}`)(s) })),
  { label: 'main-thread CPU per 1 KiB message at the highest rate ≤ 0.15 × zeromq.js', ok: (s) => zw('load_max_main_cpu')(s) <= 0.15 * zj('load_max_main_cpu')(s) },
  { label: 'event-loop delay p99 at the highest rate within 10 % of the idle loop', ok: (s) => zw('eld_max', 'p99')(s) <= 1.1 * zw('eld_idle', 'p99')(s) },
  { label: 'client CPU per 1 KiB fire-and-forget message, all threads (highest rate) ≤ zeromq.js', ok: (s) => zw('load_max_cpu')(s) <= zj('load_max_cpu')(s) },
]

// The headline table: the figures the targets are about, each with its spread over the rounds
// and zerowire's ratio to each peer within a round (median over rounds).
const HEADLINE = [
  ...RTT_CASES.flatMap(({ size }) => ['p50', 'p99'].map((part) => ({ id: `pair_rtt_${size.tag}`, part, label: `request round trip ${part}, ${size.label}, one at a time (µs)` }))),
  ...RTT_CASES.map(({ size }) => ({ id: `pair_inflight_${size.tag}_rate`, label: `requests/s, ${size.label}, ${INFLIGHT} in flight` })),
  { id: 'pair_fire_1MiB', label: 'fire-and-forget 1 MiB strings, msg/s' },
  { id: 'pair_fire_1MiB_Buffer', label: 'fire-and-forget 1 MiB Buffers, msg/s' },
  { id: 'pair_fire_1KiB', label: 'fire-and-forget 1 KiB, msg/s' },
  { id: 'pair_fire_100B', label: 'fire-and-forget 100 B, msg/s' },
  { id: 'load_max_main_cpu', label: 'main-thread CPU per 1 KiB message sending flat out (µs)' },
]

function headline (results) {
  return HEADLINE.map(({ id, part, label }) => {
    const f = FIGURES.find((x) => x.id === id)
    const values = (col) => f.cols[col] ? cellValues(results, f, f.cols[col], part).filter((v) => typeof v === 'number') : []
    const cols = {}
    for (const col of ['zerowire', 'zeromq.js', 'net']) {
      const v = values(col)
      if (v.length) cols[col] = { median: median(v), min: Math.min(...v), max: Math.max(...v) }
    }
    const perRound = (other) => {
      if (!f.cols[other]) return null
      const a = cellValues(results, f, f.cols.zerowire, part)
      const b = cellValues(results, f, f.cols[other], part)
      return median(a.map((v, i) => ratio(v, b[i])))
    }
    return { id, part, label, better: f.better, cols, toZeromqJs: perRound('zeromq.js'), toNet: perRound('net') }
  })
}

function median (values) {
  const s = values.filter((v) => typeof v === 'number' && !Number.isNaN(v)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

function sum (values) {
  return values.reduce((a, b) => a + b, 0)
}

function ratio (a, b) {
  return a > 0 && b > 0 ? a / b : null
}

/** The per-round values of one cell (one part of it), from the runs' results. */
function cellValues (results, f, src, part) {
  const key = part === undefined ? src[1] : `${src[1]}_${part}`
  return (results[src[0]] || []).map((r) => r[key])
}

/** Medians across rounds (per part), except counts of surplus deliveries, which are summed. */
function summarise (results) {
  const summary = {}
  for (const f of FIGURES) {
    summary[f.id] = {}
    for (const [col, src] of Object.entries(f.cols)) {
      if (f.sum) summary[f.id][col] = sum(src.flatMap((one) => cellValues(results, f, one).filter((v) => typeof v === 'number')))
      else if (f.parts) summary[f.id][col] = f.parts.map((part) => median(cellValues(results, f, src, part)))
      else summary[f.id][col] = median(cellValues(results, f, src))
    }
  }
  return summary
}

/** zerowire / zeromq.js within each round, then the median over rounds (per part). */
function perRoundRatios (results) {
  const out = {}
  for (const f of FIGURES) {
    if (f.sum || !f.cols.zerowire || !f.cols['zeromq.js']) continue
    const one = (part) => {
      const a = cellValues(results, f, f.cols.zerowire, part)
      const b = cellValues(results, f, f.cols['zeromq.js'], part)
      return median(a.map((v, i) => ratio(v, b[i])))
    }
    out[f.id] = f.parts ? f.parts.map(one) : one()
  }
  return out
}

/**
 * What CURVE costs, from the same rounds: per round, CURVE / plaintext for each library and
 * zerowire / zeromq.js under CURVE, then the median and the spread (min, max) over rounds.
 * Rates: CURVE / plaintext below 1 is a loss; latencies: above 1 is a loss.
 */
function curveRatios (results) {
  const rows = []
  const spread = (values) => {
    const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x))
    return { median: median(v), min: v.length ? Math.min(...v) : null, max: v.length ? Math.max(...v) : null, rounds: v.length }
  }
  const figures = [['fire_1KiB', 'fire-and-forget 1 KiB msg/s'], ['rtt_100B_p50', 'round trip 100 B p50'], ['rtt_100B_p99', 'round trip 100 B p99']]
  for (const [key, label] of figures) {
    const of = (run) => (results[run] || []).map((r) => r[key])
    const per = (a, b) => a.map((v, i) => ratio(v, b[i]))
    const zwTcp = of('zerowire@zwserver-tcp')
    const zwCurve = of('zerowire@zwserver-curve')
    const zjTcp = of('zeromq.js@node-tcp')
    const zjCurve = of('zeromq.js@node-curve')
    rows.push({
      key,
      label,
      zerowireCurveToPlain: spread(per(zwCurve, zwTcp)),
      zeromqJsCurveToPlain: spread(per(zjCurve, zjTcp)),
      zerowireToZeromqJsCurve: spread(per(zwCurve, zjCurve)),
      zerowireToZeromqJsPlain: spread(per(zwTcp, zjTcp)),
    })
  }
  return rows
}

/** VmRSS and VmHWM of a process, in MiB (null if it is gone). */
function rssOf (pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'latin1')
    const kib = (name) => Number((new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status) || [])[1])
    return { MiB: kib('VmRSS') / 1024, peak_MiB: kib('VmHWM') / 1024 }
  } catch {
    return null
  }
}

function writeAtomically (file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  // Write-then-rename so an interrupted run never leaves a half-written file.
  fs.writeFileSync(`${file}.tmp`, text)
  fs.renameSync(`${file}.tmp`, file)
}

// ---- main -------------------------------------------------------------------------------------

const ADDON = path.join(ROOT, 'zerowire.node')
const addonMtime = () => fs.existsSync(ADDON) ? fs.statSync(ADDON).mtime.toISOString() : null
// The addon loaded at start; others may rebuild it while the run goes on.
const ADDON_LOADED = addonMtime()

async function main () {
  const executables = await buildExamples()

  const started = Date.now()
  setTimeout(() => {
    console.error(`bench: over the ${TIME_BUDGET_MS / 1000} s budget, giving up`)
    process.exit(1)
  }, TIME_BUDGET_MS).unref()

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerowire-bench-'))
  const addresses = {
    router: `ipc://${path.join(tmpDir, 'router.sock')}`,
    node: `ipc://${path.join(tmpDir, 'node.sock')}`,
    zwserver: `ipc://${path.join(tmpDir, 'zwserver.sock')}`,
    zwserverUtf8: `ipc://${path.join(tmpDir, 'zwserver-utf8.sock')}`,
    net: path.join(tmpDir, 'net.sock'),
  }
  const servers = {
    router: await startServer(spawnRouter(executables.bench_router, addresses.router)),
    node: await startServer(forkServer('server.js', addresses.node)),
    zwserver: await startServer(forkServer('zw_server.js', addresses.zwserver, ['buffer'])),
    zwserverUtf8: await startServer(forkServer('zw_server.js', addresses.zwserverUtf8, ['utf8'])),
    net: await startServer(forkServer('net_server.js', addresses.net)),
    zwserverTcp: await startServer(forkServer('zw_server.js', 'tcp://127.0.0.1:0', ['buffer'])),
    zwserverCurve: await startServer(forkServer('zw_server.js', 'tcp://127.0.0.1:0', ['buffer'], { BENCH_CURVE_SECRET: CURVE_SERVER_KEYS.secretKey })),
    nodeTcp: await startServer(forkServer('server.js', 'tcp://127.0.0.1:*')),
    nodeCurve: await startServer(forkServer('server.js', 'tcp://127.0.0.1:*', [], { BENCH_CURVE_SECRET: CURVE_SERVER_KEYS.secretKey })),
  }
  // The tcp servers picked their ports.
  for (const name of ['zwserverTcp', 'zwserverCurve', 'nodeTcp', 'nodeCurve']) addresses[name] = servers[name].endpoint
  const results = Object.fromEntries(RUNS.map((run) => [run.id, []]))
  for (let round = 1; round <= ROUNDS; round++) {
    for (const run of RUNS) {
      const r = await runOnce(run, servers, addresses, executables)
      results[run.id].push(r)
      console.error(`round ${round}/${ROUNDS} ${run.id}: ${JSON.stringify(r, (k, v) => typeof v === 'number' ? +v.toPrecision(4) : v)}`)
    }
  }
  const durationSeconds = Math.round((Date.now() - started) / 1000)
  // The servers' memory once every round has gone through them.
  const serverRss = Object.fromEntries(Object.entries(servers).map(([name, server]) => [name, rssOf(server.pid)]))
  results.servers = [Object.fromEntries(Object.entries(serverRss).flatMap(([name, m]) => m ? [[`${name}_MiB`, m.MiB], [`${name}_peak_MiB`, m.peak_MiB]] : []))]

  const summary = summarise(results)
  // Wall-time counterparts of the send() figures, and the main thread's wait for a CPU during
  // them (wall ≈ CPU + wait + time off-CPU by choice), for the JSON only.
  const sendDetail = {}
  for (const c of SEND_CASES) {
    const med = (runId, suffix) => median(results[runId].map((r) => r[`${c.key}${suffix}`]))
    sendDetail[c.key] = {
      zerowire: { cpu: summary[c.key].zerowire, wall: med('zerowire', '_wall'), wallSyncLoopOnly: med('zerowire', '_loop_wall'), waitingForCpu: med('zerowire', '_cpu_wait') },
      'zeromq.js': { cpu: summary[c.key]['zeromq.js'], wall: med('zeromq.js', '_wall'), waitingForCpu: med('zeromq.js', '_cpu_wait') },
    }
  }

  const report = {
    date: new Date().toISOString(),
    cpu: os.cpus()[0].model,
    cpus: os.cpus().length,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadAverage: os.loadavg(),
    addonBuilt: ADDON_LOADED,
    sendTimer: clock.name,
    sendTimerKind: clock.kind,
    sendTimerUnsyncedReads: clock.unsyncedReads,
    sendTimerOverheadUs: clock.overheadUs,
    rounds: ROUNDS,
    durationSeconds,
    servers: {
      router: 'core/examples/bench_router.rs: ROUTER on the zeromq crate 0.7, tokio current-thread runtime',
      node: 'bench/server.js: zeromq.js 6 Router in Node (counts Buffer lengths, echoes the frames)',
      zwserver: "bench/zw_server.js buffer: zerowire Server in Node, encoding 'buffer' ('message' event: count, or ctx.reply() the body)",
      zwserverUtf8: "bench/zw_server.js utf8: the same with the default encoding (bodies decoded to strings)",
      net: 'bench/net_server.js: Node net server on a Unix socket',
      floor: 'core/examples/uds_floor.rs: two native processes, blocking std Unix sockets',
    },
    config: {
      sendCases: SEND_CASES.map(({ key, label, calls, batch }) => ({ key, label, calls, batch })),
      fireCases: [...FIRE_CASES, ...FIRE_BUFFER_CASES].map(({ key, label, size, messages }) => ({ key, label, bytes: size.bytes, messages })),
      rttCases: RTT_CASES.map(({ key, label }) => ({ key, label })),
      rttWarmup: RTT_WARMUP,
      rttSamples: RTT_SAMPLES,
      inflight: INFLIGHT,
      inflightWarmup: INFLIGHT_WARMUP,
      inflightSamples: INFLIGHT_SAMPLES,
      zerowireOptions: CLIENT_OPTIONS,
      runs: RUNS.map(({ id, open, load, server, send, fire, rtt, inflight, floor }) => ({
        id, client: open || load || 'uds_floor', server: server || 'uds_floor', ...(load ? { load: true } : {}), ...(floor ? { floor: true } : {}), send: !!send,
        fire: (fire || []).map((c) => c.key), rtt: (rtt || []).map((c) => c.key), inflight: (inflight || []).map((c) => c.key),
      })),
    },
    figures: FIGURES.map(({ section, id, label, unit, better, bytes, cols, parts, sum }) => ({ section, id, label, unit, better, ...(bytes ? { bytesPerMessage: bytes } : {}), ...(parts ? { parts } : {}), ...(sum ? { summed: true } : {}), cols })),
    summary,
    // µs per call. wallSyncLoopOnly: zerowire's synchronous loop without the hand-over of the
    // tick's batch to the engine (which the cpu and wall figures include).
    sendDetailUsPerCall: sendDetail,
    // zerowire / zeromq.js within each round (the two runs are neighbours in time), then the
    // median over rounds: less sensitive to the machine drifting between rounds.
    ratioZerowireToZeromqJsPerRoundMedian: perRoundRatios(results),
    curveRatios: curveRatios(results),
    targets: TARGETS.map((t) => ({ target: t.label, met: t.ok(summary) })),
    headline: headline(results),
    perRound: results,
  }

  const notes = []
  for (const run of RUNS) {
    const copies = sum(results[run.id].map((r) => r.fire_surplus || 0))
    if (copies > 0) notes.push(`Note: ${run.id} delivered ${copies} surplus copies during its fire-and-forget figures; copies counted towards N, so its msg/s is overstated.`)
  }
  if (addonMtime() !== ADDON_LOADED) notes.push(`Note: zerowire.node was rebuilt during the run (${addonMtime()}); the run measured the build loaded at start (${ADDON_LOADED}).`)
  const all = RUNS.flatMap((run) => results[run.id])
  report.otherProcessesCoresMedian = median(all.map((r) => r.other_cores))
  report.stealCoresMedian = median(all.map((r) => r.steal_cores))
  if (clock.unsyncedReads > 0) notes.push(`Note: ${clock.unsyncedReads} CPU-clock readings could not be synchronised and may lag by up to one scheduler tick.`)
  report.notes = notes
  // The Markdown and the chart are rendered from the report alone (readme.js, chart.js), so
  // README.md can be redone from results/latest.json at any time and always matches it.
  const md = render(report)
  console.log(md)

  const results_ = (name) => path.join(__dirname, 'results', name)
  writeAtomically(results_('latest.json'), JSON.stringify(report, null, 2) + '\n')
  writeAtomically(results_('latest.md'), md)
  writeAtomically(results_('latest.svg'), chart(report))
  console.log(`Written: ${['latest.json', 'latest.md', 'latest.svg'].map((f) => path.relative(process.cwd(), results_(f))).join(', ')}`)
  // Only a run that got this far (every figure measured, every count right) reaches the README.
  updateReadme(report)
  console.log('README.md: benchmark section updated (bench/readme.js)')
}

process.on('exit', cleanup)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => process.exit(128 + os.constants.signals[signal]))
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err)
    process.exit(1)
  },
)
