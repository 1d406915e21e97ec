'use strict'
// End-to-end benchmark: zerowire Client vs zeromq.js 6 Dealer against the same server in
// another process — mainly a native ROUTER (core/examples/bench_router.rs, the `zeromq` crate),
// so the server is not what limits either client, and also a zeromq.js ROUTER (server.js) —
// plus "Node → Node" pairs, each library's client with its own server in Node (zerowire Client
// → zerowire Server in zw_server.js, zeromq.js Dealer → zeromq.js Router in server.js), and a
// raw Node `net` Unix-socket baseline. Clients run interleaved in rounds and medians across
// rounds are reported, because the machine is noisy. At the end the table also replaces the
// benchmark section of the top-level README.md (readme.js).
// See bench/README.md for what each figure means.
// Usage: node bench/run.js   (npm run bench)

const { fork, spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const zmq = require('zeromq')
const { Client } = require('..')
const { encodeFrame, FrameReader, KIND_COUNT, KIND_ECHO } = require('./framing')
const { render, updateReadme } = require('./readme')

const ROOT = path.join(__dirname, '..')
const ROUNDS = Number(process.env.BENCH_ROUNDS) || 7
const KIB = 1024
const MIB = 1024 * KIB
const RTT_WARMUP = 500
const RTT_SAMPLES = 5_000
const WAIT_TIMEOUT_MS = 60_000
// How long a server must see no message before it reports its final counts.
const QUIET_MS = 100
// The measured part must end well inside 4 minutes even if something stalls (the cargo build
// before it is not counted).
const TIME_BUDGET_MS = 225_000
const BUILD_TIMEOUT_MS = 600_000

// `batch` keeps every timed loop under zerowire's high-water marks (CLIENT_OPTIONS), so no
// send() is refused; the server must have counted a batch before the next one starts. Each
// timed batch should take well over 1 ms of main-thread time, because every CPU-clock reading
// carries a few tens of µs of noise (see makeClock); hence the 200-Buffer batches, which zerowire
// and zeromq.js both send without copying.
const SEND_CASES = [
  { key: 'send_100B_string', label: '100 B string', body: 'x'.repeat(100), calls: 20_000, batch: 20_000 },
  { key: 'send_1KiB_string', label: '1 KiB string', body: 'x'.repeat(KIB), calls: 20_000, batch: 20_000 },
  { key: 'send_1MiB_string', label: '1 MiB string', body: 'x'.repeat(MIB), calls: 200, batch: 25 },
  { key: 'send_1MiB_buffer', label: '1 MiB Buffer', body: Buffer.alloc(MIB, 'x'), calls: 800, batch: 200 },
]
// Fire-and-forget: N messages from the first send until the server has counted all of them.
// The 1 MiB case sends fewer, to keep the run short.
const FIRE_CASES = [
  { key: 'fire_100B', label: '100 B', body: 'x'.repeat(100), messages: 200_000 },
  { key: 'fire_1KiB', label: '1 KiB', body: 'x'.repeat(KIB), messages: 200_000 },
  { key: 'fire_1MiB', label: '1 MiB', body: 'x'.repeat(MIB), messages: 300 },
]
const FIRE = Object.fromEntries(FIRE_CASES.map((c) => [c.key, c]))
const RTT_CASES = [
  { key: 'rtt_100B', label: '100 B', body: 'x'.repeat(100) },
  { key: 'rtt_1KiB', label: '1 KiB', body: 'x'.repeat(KIB) },
]
const CLIENT_OPTIONS = {
  requestTimeoutMs: 5000,
  sendHighWaterMark: 100_000,
  sendHighWaterBytes: 256 * MIB,
  maxMessageBytes: 16 * MIB,
  lingerMs: 1000,
}
const EMPTY = Buffer.alloc(0)

const wallNs = () => process.hrtime.bigint()
const immediate = () => new Promise((resolve) => setImmediate(resolve))

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

/** Builds the native ROUTER and returns the path of its executable. */
async function buildRouter () {
  const args = ['build', '--release', '-p', 'zerowire-core', '--example', 'bench_router', '--message-format=json-render-diagnostics']
  console.error(`bench: building the native ROUTER (cargo ${args.slice(0, 6).join(' ')}); about a minute the first time…`)
  const child = spawn('cargo', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], detached: true })
  child.group = true
  children.add(child)
  let executable = null
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const m = JSON.parse(line)
      if (m.reason === 'compiler-artifact' && m.target && m.target.name === 'bench_router' && m.executable) executable = m.executable
    } catch {}
  })
  const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), BUILD_TIMEOUT_MS)
  const code = await new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  clearTimeout(timer)
  children.delete(child)
  if (code !== 0 || executable === null) throw new Error(`cargo build of bench_router failed (exit ${code})`)
  return executable
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

/** A Node server (server.js, net_server.js): commands and counts over the fork() IPC channel. */
function forkServer (script, address) {
  const child = fork(path.join(__dirname, script), [address], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const replies = replyQueue()
  child.on('message', (msg) => replies.push(msg))
  return {
    name: script,
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
  await replies.next(`${name} to start`)
  // Counts only grow; waiting for a running total avoids resetting the server between figures.
  const expected = { count: 0, bytes: 0 }
  return {
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

async function openZerowire (endpoint) {
  const client = new Client(endpoint, CLIENT_OPTIONS)
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
      // A full queue refuses; yielding lets the I/O thread drain it, as an application would.
      const refusedBefore = client.stats().refused
      for (let i = 0; i < n;) {
        if (client.send(body)) i++
        else await immediate()
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
    close () {
      return client.close()
    },
  }
}

async function openZeromqJs (endpoint) {
  const dealer = new zmq.Dealer({ sendHighWaterMark: CLIENT_OPTIONS.sendHighWaterMark, linger: CLIENT_OPTIONS.lingerMs })
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
    close () {
      dealer.close()
    },
  }
}

async function openNet (socketPath) {
  const sock = net.connect(socketPath)
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject))
  let awaitingReply = null
  const reader = new FrameReader((kind, body) => {
    const resolve = awaitingReply
    awaitingReply = null
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
        awaitingReply = resolve
        sock.write(encodeFrame(KIND_ECHO, body))
      })
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

/** p50 / p99 / max round trip in µs, one request at a time. */
async function measureRoundTrip (client, body) {
  const samples = new Float64Array(RTT_SAMPLES)
  for (let i = 0; i < RTT_WARMUP + RTT_SAMPLES; i++) {
    const t0 = wallNs()
    const reply = await client.request(body)
    const us = Number(wallNs() - t0) / 1e3
    if (reply !== body) throw new Error(`wrong echo: ${JSON.stringify(reply).slice(0, 60)}`)
    if (i >= RTT_WARMUP) samples[i - RTT_WARMUP] = us
  }
  samples.sort()
  // Nearest-rank percentiles.
  const pct = (p) => samples[Math.ceil((p / 100) * samples.length) - 1]
  return { p50: pct(50), p99: pct(99), max: samples[samples.length - 1] }
}

// ---- runs -------------------------------------------------------------------------------------
// A run is one client against one server; each round runs every one once, interleaved, each on a
// fresh connection. `send`/`fire`/`rtt` say which figures it measures. Servers: `router` the
// native ROUTER, `node` the zeromq.js Router in Node (server.js), `zwserver` the zerowire Server
// in Node (zw_server.js), `net` the raw baseline.

const RUNS = [
  { id: 'zerowire', open: 'zerowire', server: 'router', send: true, fire: [FIRE.fire_1KiB], rtt: RTT_CASES },
  { id: 'zeromq.js', open: 'zeromq.js', server: 'router', send: true, fire: [FIRE.fire_1KiB], rtt: RTT_CASES },
  { id: 'net', open: 'net', server: 'net', send: false, fire: FIRE_CASES, rtt: RTT_CASES },
  { id: 'zerowire@zwserver', open: 'zerowire', server: 'zwserver', send: false, fire: FIRE_CASES, rtt: RTT_CASES.slice(0, 1) },
  { id: 'zeromq.js@node', open: 'zeromq.js', server: 'node', send: false, fire: FIRE_CASES, rtt: RTT_CASES.slice(0, 1) },
  { id: 'zerowire@node', open: 'zerowire', server: 'node', send: false, fire: [FIRE.fire_1KiB], rtt: RTT_CASES.slice(0, 1) },
]
const OPEN = { zerowire: openZerowire, 'zeromq.js': openZeromqJs, net: openNet }

async function runOnce (run, servers, addresses) {
  const t0 = wallNs()
  const server = servers[run.server]
  const pids = [process.pid, ...[...children].map((c) => c.pid)]
  const load0 = readTicks(pids)
  const client = await OPEN[run.open](addresses[run.server])
  const r = {}
  let surplus = 0
  if (run.send) {
    for (const c of SEND_CASES) {
      const m = await measureSend(client, server, c)
      r[c.key] = m.us
      r[`${c.key}_wall`] = m.wallUs
      if (run.open === 'zerowire') r[`${c.key}_loop_wall`] = m.loopWallUs
      // µs per call the main thread was runnable but had no CPU (NaN without schedstat).
      r[`${c.key}_cpu_wait`] = m.cpuWaitUs
      surplus += m.surplus
    }
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
    r[`${c.key}_p50`] = m.p50
    r[`${c.key}_p99`] = m.p99
    r[`${c.key}_max`] = m.max
  }
  await client.close()
  Object.assign(r, otherLoad(load0, readTicks(pids)))
  r.seconds = Number(wallNs() - t0) / 1e9
  return r
}

// ---- report -----------------------------------------------------------------------------------

// The table's figures in order, each in a section (readme.js starts a bold row where the
// section changes). `cols` names the run behind each column; `unit` and `better` (which
// direction is good) are for the reader; `bytes` (fire-and-forget) adds MB/s to the cells.
const PRIMARY = { zerowire: 'zerowire', 'zeromq.js': 'zeromq.js', net: 'net' }
const PAIRS = { zerowire: 'zerowire@zwserver', 'zeromq.js': 'zeromq.js@node', net: 'net' }
const NODE = { zerowire: 'zerowire@node', 'zeromq.js': 'zeromq.js@node', net: 'net' }
const withoutNet = ({ net, ...cols }) => cols
const fireRow = (section, id, c, cols) => ({ section, id, key: c.key, label: `fire-and-forget ${c.label}`, unit: 'msg/s', better: 'higher', bytes: Buffer.byteLength(c.body), cols })
const S_PRIMARY = 'Against the native ROUTER (Rust, `zeromq` crate)'
const S_PAIRS = 'Node → Node, end to end: zerowire Client → zerowire Server (`zw_server.js`) vs zeromq.js Dealer → zeromq.js Router (`server.js`)'
const S_NODE = 'Both clients against the same zeromq.js ROUTER in Node (`server.js`)'
const FIGURES = [
  ...SEND_CASES.map((c) => ({ section: S_PRIMARY, id: c.key, key: c.key, label: `send() ${c.label}`, unit: 'µs/call', better: 'lower', cols: withoutNet(PRIMARY) })),
  fireRow(S_PRIMARY, 'fire_1KiB', FIRE.fire_1KiB, PRIMARY),
  ...RTT_CASES.flatMap((c) => ['p50', 'p99'].map((p) => ({ section: S_PRIMARY, id: `${c.key}_${p}`, key: `${c.key}_${p}`, label: `round trip ${c.label} ${p}`, unit: 'µs', better: 'lower', cols: PRIMARY }))),
  // Not a speed: messages the server received more often than they were sent, over all figures
  // and rounds. Anything but 0 is a delivery bug in that client (or server).
  { section: S_PRIMARY, id: 'surplus', key: 'surplus', label: 'surplus deliveries (sum of rounds)', unit: 'messages', better: 'must be 0', cols: PRIMARY, sum: true },
  ...FIRE_CASES.map((c) => fireRow(S_PAIRS, `pair_${c.key}`, c, PAIRS)),
  { section: S_PAIRS, id: 'pair_rtt_100B_p50', key: 'rtt_100B_p50', label: 'round trip 100 B p50', unit: 'µs', better: 'lower', cols: PAIRS },
  { section: S_PAIRS, id: 'pair_rtt_100B_p99', key: 'rtt_100B_p99', label: 'round trip 100 B p99', unit: 'µs', better: 'lower', cols: PAIRS },
  { section: S_PAIRS, id: 'pair_surplus', key: 'surplus', label: 'surplus deliveries (sum of rounds)', unit: 'messages', better: 'must be 0', cols: withoutNet(PAIRS), sum: true },
  fireRow(S_NODE, 'node_fire_1KiB', FIRE.fire_1KiB, NODE),
  { section: S_NODE, id: 'node_rtt_100B_p50', key: 'rtt_100B_p50', label: 'round trip 100 B p50', unit: 'µs', better: 'lower', cols: NODE },
  { section: S_NODE, id: 'node_rtt_100B_p99', key: 'rtt_100B_p99', label: 'round trip 100 B p99', unit: 'µs', better: 'lower', cols: NODE },
  { section: S_NODE, id: 'node_surplus', key: 'surplus', label: 'surplus deliveries (sum of rounds)', unit: 'messages', better: 'must be 0', cols: withoutNet(NODE), sum: true },
]

const TARGETS = [
  { label: 'send() 1 KiB string ≤ 0.5 µs', ok: (s) => s.send_1KiB_string.zerowire <= 0.5 },
  { label: 'send() 1 MiB Buffer ≤ 5 µs', ok: (s) => s.send_1MiB_buffer.zerowire <= 5 },
  { label: 'round trip 100 B p50 ≤ 0.5 × zeromq.js (native ROUTER)', ok: (s) => s.rtt_100B_p50.zerowire <= 0.5 * s.rtt_100B_p50['zeromq.js'] },
  { label: 'Node → Node fire-and-forget 1 KiB ≥ 3 × zeromq.js', ok: (s) => s.pair_fire_1KiB.zerowire >= 3 * s.pair_fire_1KiB['zeromq.js'] },
  { label: 'Node → Node round trip 100 B p50 ≤ 0.5 × zeromq.js', ok: (s) => s.pair_rtt_100B_p50.zerowire <= 0.5 * s.pair_rtt_100B_p50['zeromq.js'] },
]

function median (values) {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

function sum (values) {
  return values.reduce((a, b) => a + b, 0)
}

function ratio (a, b) {
  return a > 0 && b > 0 ? a / b : undefined
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
  const routerExecutable = await buildRouter()

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
    net: path.join(tmpDir, 'net.sock'),
  }
  const servers = {
    router: await startServer(spawnRouter(routerExecutable, addresses.router)),
    node: await startServer(forkServer('server.js', addresses.node)),
    zwserver: await startServer(forkServer('zw_server.js', addresses.zwserver)),
    net: await startServer(forkServer('net_server.js', addresses.net)),
  }
  const results = Object.fromEntries(RUNS.map((run) => [run.id, []]))
  for (let round = 1; round <= ROUNDS; round++) {
    for (const run of RUNS) {
      const r = await runOnce(run, servers, addresses)
      results[run.id].push(r)
      console.error(`round ${round}/${ROUNDS} ${run.id}: ${JSON.stringify(r, (k, v) => typeof v === 'number' ? +v.toPrecision(4) : v)}`)
    }
  }
  const durationSeconds = Math.round((Date.now() - started) / 1000)

  // Medians across rounds, except counts of surplus deliveries, which are summed.
  const summary = {}
  for (const f of FIGURES) {
    summary[f.id] = {}
    for (const [col, runId] of Object.entries(f.cols)) {
      const values = results[runId].map((r) => r[f.key])
      summary[f.id][col] = f.sum ? sum(values) : median(values)
    }
  }
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
      node: 'bench/server.js: zeromq.js 6 Router in Node',
      zwserver: "bench/zw_server.js: zerowire Server in Node ('message' event: count, or ctx.reply() the body)",
      net: 'bench/net_server.js: Node net server on a Unix socket',
    },
    config: {
      sendCases: SEND_CASES.map(({ key, label, calls, batch }) => ({ key, label, calls, batch })),
      fireCases: FIRE_CASES.map(({ key, label, body, messages }) => ({ key, label, bytes: Buffer.byteLength(body), messages })),
      rttCases: RTT_CASES.map(({ key, label }) => ({ key, label })),
      rttWarmup: RTT_WARMUP,
      rttSamples: RTT_SAMPLES,
      zerowireOptions: CLIENT_OPTIONS,
      runs: RUNS.map(({ id, open, server, send, fire, rtt }) => ({ id, client: open, server, send, fire: fire.map((c) => c.key), rtt: rtt.map((c) => c.key) })),
    },
    figures: FIGURES.map(({ section, id, key, label, unit, better, bytes, cols, sum }) => ({ section, id, key, label, unit, better, ...(bytes ? { bytesPerMessage: bytes } : {}), ...(sum ? { summed: true } : {}), runs: cols })),
    summary,
    // µs per call. wallSyncLoopOnly: zerowire's synchronous loop without the hand-over of the
    // tick's batch to the engine (which the cpu and wall figures include).
    sendDetailUsPerCall: sendDetail,
    ratioZerowireToZeromqJs: Object.fromEntries(FIGURES.map((f) => [f.id, ratio(summary[f.id].zerowire, summary[f.id]['zeromq.js']) ?? null])),
    // The same ratio taken within each round (the two runs are neighbours in time), then the
    // median over rounds: less sensitive to the machine drifting between rounds.
    ratioZerowireToZeromqJsPerRoundMedian: Object.fromEntries(FIGURES.filter((f) => !f.sum).map((f) => {
      const zw = results[f.cols.zerowire]
      const zj = results[f.cols['zeromq.js']]
      return [f.id, median(zw.map((r, i) => r[f.key] / zj[i][f.key]))]
    })),
    targets: TARGETS.map((t) => ({ target: t.label, met: t.ok(summary) })),
    perRound: results,
  }

  const notes = []
  for (const [runId, rs] of Object.entries(results)) {
    const copies = sum(rs.map((r) => r.fire_surplus))
    if (copies > 0) notes.push(`Note: ${runId} delivered ${copies} surplus copies during its fire-and-forget figures; copies counted towards N, so its msg/s is overstated.`)
  }
  if (addonMtime() !== ADDON_LOADED) notes.push(`Note: zerowire.node was rebuilt during the run (${addonMtime()}); the run measured the build loaded at start (${ADDON_LOADED}).`)
  const others = median(Object.values(results).flat().map((r) => r.other_cores).filter((v) => v !== undefined))
  const steal = median(Object.values(results).flat().map((r) => r.steal_cores).filter((v) => v !== undefined))
  report.otherProcessesCoresMedian = Number.isFinite(others) ? others : null
  report.stealCoresMedian = Number.isFinite(steal) ? steal : null
  if (clock.unsyncedReads > 0) notes.push(`Note: ${clock.unsyncedReads} CPU-clock readings could not be synchronised and may lag by up to one scheduler tick.`)
  report.notes = notes
  // The Markdown is rendered from the report alone (readme.js), so README.md can be redone
  // from results/latest.json at any time and always matches it.
  const md = render(report)
  console.log(md)

  const out = path.join(__dirname, 'results', 'latest.json')
  writeAtomically(out, JSON.stringify(report, null, 2) + '\n')
  writeAtomically(path.join(__dirname, 'results', 'latest.md'), md)
  console.log(`JSON: ${path.relative(process.cwd(), out)}; Markdown: ${path.relative(process.cwd(), path.join(__dirname, 'results', 'latest.md'))}`)
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
