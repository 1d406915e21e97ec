'use strict'
// Wake-ups, context switches and syscalls per request round trip, per thread, in the client's
// process and the server's: what a round trip costs in hops, which (unlike its time) is steady on
// a shared machine.
//
// One client in this process, its server forked, over a Unix socket in a fresh temp dir;
// requests one at a time (or WAKEUPS_INFLIGHT at a time). Per thread (by name; the main
// thread is `main`): voluntary context switches (each one a sleep, so a wake-up to come),
// involuntary ones, CPU µs, and, when `perf` can attach, syscalls and the wake-ups the thread
// issued to others (`sched:sched_wakeup`, counted in the waker's context).
//
// Usage: node bench/wakeups.js [zerowire] [net] [zeromq.js]   (npm run bench:wakeups)
//   WAKEUPS_BYTES=100 (body size), WAKEUPS_N=4000 (timed round trips), WAKEUPS_INFLIGHT=1,
//   WAKEUPS_PERF=0 to leave perf out, WAKEUPS_JSON=1 for one JSON line per run,
//   WAKEUPS_ALLOCS=1 to count malloc + realloc calls per thread too. That needs uprobes on
//   libc, made once as root: `perf probe -x <libc.so.6> -a malloc -a realloc`. Each probed call
//   traps into the kernel, so the times of such a run mean nothing; the counts do.

const { fork, spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { encodeFrame, FrameReader, KIND_ECHO } = require('./framing')

const BYTES = Number(process.env.WAKEUPS_BYTES) || 100
const N = Number(process.env.WAKEUPS_N) || 4000
const WARMUP = 500
const INFLIGHT = Number(process.env.WAKEUPS_INFLIGHT) || 1
const USE_PERF = process.env.WAKEUPS_PERF !== '0' && spawnSync('perf', ['--version']).status === 0
const ALLOC_EVENTS = ['probe_libc:malloc', 'probe_libc:realloc']
const USE_ALLOCS = USE_PERF && process.env.WAKEUPS_ALLOCS === '1' && (() => {
  const listed = spawnSync('perf', ['probe', '-l'], { encoding: 'utf8' })
  if (ALLOC_EVENTS.every((e) => (listed.stdout || '').includes(e))) return true
  throw new Error(`WAKEUPS_ALLOCS=1 needs the uprobes ${ALLOC_EVENTS.join(', ')} (perf probe -x <libc.so.6> -a malloc -a realloc, as root)`)
})()
const BODY = 'x'.repeat(BYTES)

/** Per thread of `pid`: name, voluntary and involuntary switches, CPU ns. */
function threads (pid) {
  const out = new Map()
  let tids
  try { tids = fs.readdirSync(`/proc/${pid}/task`) } catch { return out }
  for (const tid of tids) {
    try {
      const dir = `/proc/${pid}/task/${tid}`
      const status = fs.readFileSync(`${dir}/status`, 'utf8')
      const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)[1])
      const name = Number(tid) === pid ? 'main' : fs.readFileSync(`${dir}/comm`, 'utf8').trim()
      const cpuNs = Number(fs.readFileSync(`${dir}/schedstat`, 'utf8').split(' ')[0])
      out.set(tid, { name, vol: field('voluntary_ctxt_switches'), invol: field('nonvoluntary_ctxt_switches'), cpuNs })
    } catch { /* the thread ended meanwhile */ }
  }
  return out
}

/** Per thread name, what changed between two snapshots (threads of one name summed). */
function delta (before, after) {
  const byName = new Map()
  for (const [tid, a] of after) {
    const b = before.get(tid) || { vol: 0, invol: 0, cpuNs: 0 }
    const d = byName.get(a.name) || { vol: 0, invol: 0, cpuNs: 0, threads: 0 }
    d.vol += a.vol - b.vol
    d.invol += a.invol - b.invol
    d.cpuNs += a.cpuNs - b.cpuNs
    d.threads++
    byName.set(a.name, d)
  }
  return byName
}

/** perf stat over both processes while the timed round trips run: per-thread counts. */
function startPerf (pids) {
  if (!USE_PERF) return null
  const events = ['raw_syscalls:sys_enter', 'sched:sched_wakeup', ...(USE_ALLOCS ? ALLOC_EVENTS : [])]
  const child = spawn('perf', ['stat', '--per-thread', '-x', ',', '-e', events.join(','), '-p', pids.join(',')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let text = ''
  child.stderr.on('data', (d) => { text += d })
  const done = new Promise((resolve) => child.on('close', () => resolve(text)))
  return { child, done }
}

/** `comm-tid,count,,event,...` lines → Map tid → { syscalls, wakes, allocs }. */
function parsePerf (text) {
  const out = new Map()
  for (const line of text.split('\n')) {
    const f = line.split(',')
    if (f.length < 4) continue
    const m = /-(\d+)$/.exec(f[0])
    const count = Number(f[1])
    if (!m || !Number.isFinite(count)) continue
    const e = out.get(m[1]) || { syscalls: 0, wakes: 0, allocs: 0 }
    if (f[3].startsWith('raw_syscalls')) e.syscalls += count
    else if (f[3].startsWith('sched:sched_wakeup')) e.wakes += count
    else if (f[3].startsWith('probe_libc:')) e.allocs += count
    out.set(m[1], e)
  }
  return out
}

function forkServer (script, address, ...args) {
  const child = fork(path.join(__dirname, script), [address, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ready = new Promise((resolve, reject) => {
    child.on('message', (m) => { if (m && m.ready) resolve() })
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)))
  })
  return { child, ready }
}

async function openZerowire (endpoint) {
  const { Client } = require('..')
  const client = new Client(endpoint, { requestTimeoutMs: 5000 })
  return { request: (body) => client.request(body), close: () => client.close() }
}

async function openZeromqJs (endpoint) {
  const zmq = require('zeromq')
  const dealer = new zmq.Dealer({ linger: 0 })
  dealer.connect(endpoint)
  let nextCorr = 1
  const waiting = new Map()
  ;(async () => {
    for await (const [corr, reply] of dealer) {
      const id = corr.readUInt32LE(0)
      const resolve = waiting.get(id)
      waiting.delete(id)
      resolve(reply.toString())
    }
  })().catch(() => {})
  // One send at a time (zeromq.js refuses a second with EBUSY).
  let sending = Promise.resolve()
  return {
    request (body) {
      const corr = Buffer.allocUnsafe(4)
      const id = nextCorr++ >>> 0
      corr.writeUInt32LE(id)
      const reply = new Promise((resolve) => waiting.set(id, resolve))
      sending = sending.then(() => dealer.send([corr, body]))
      return reply
    },
    close: () => dealer.close(),
  }
}

async function openNet (socketPath) {
  const sock = net.connect(socketPath)
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject))
  const awaiting = []
  const reader = new FrameReader((kind, body) => awaiting.shift()(body.toString()))
  sock.on('data', (chunk) => reader.push(chunk))
  return {
    request (body) {
      return new Promise((resolve) => {
        awaiting.push(resolve)
        sock.write(encodeFrame(KIND_ECHO, body))
      })
    },
    close: () => sock.destroy(),
  }
}

const LIBS = {
  zerowire: { server: ['zw_server.js', 'buffer'], ipc: true, open: openZerowire },
  'zeromq.js': { server: ['server.js'], ipc: true, open: openZeromqJs },
  net: { server: ['net_server.js'], ipc: false, open: openNet },
}

async function roundTrips (client, n) {
  const samples = new Float64Array(n)
  let issued = 0
  let done = 0
  const worker = async () => {
    while (issued < n) {
      issued++
      const t0 = process.hrtime.bigint()
      const reply = await client.request(BODY)
      if (reply.length !== BODY.length) throw new Error('wrong echo')
      samples[done++] = Number(process.hrtime.bigint() - t0) / 1e3
    }
  }
  await Promise.all(Array.from({ length: INFLIGHT }, worker))
  samples.sort()
  return { p50: samples[Math.floor(n / 2)], p99: samples[Math.floor(n * 0.99)] }
}

async function measure (lib, dir) {
  const spec = LIBS[lib]
  const sockPath = path.join(dir, `${lib}.sock`)
  const address = spec.ipc ? `ipc://${sockPath}` : sockPath
  const server = forkServer(spec.server[0], address, ...spec.server.slice(1))
  try {
    await server.ready
    const client = await spec.open(address)
    await roundTrips(client, WARMUP)
    const pids = [process.pid, server.child.pid]
    const perf = startPerf(pids)
    // perf needs a moment to attach to every thread.
    if (perf) await new Promise((resolve) => setTimeout(resolve, 300))
    const before = pids.map(threads)
    const t0 = process.hrtime.bigint()
    const { p50, p99 } = await roundTrips(client, N)
    const wallUs = Number(process.hrtime.bigint() - t0) / 1e3
    const after = pids.map(threads)
    let perTid = new Map()
    if (perf) {
      perf.child.kill('SIGINT')
      perTid = parsePerf(await perf.done)
    }
    await client.close()
    const procs = ['client', 'server'].map((role, i) => {
      const d = delta(before[i], after[i])
      for (const [tid, t] of after[i]) {
        const p = perTid.get(tid)
        if (!p) continue
        const e = d.get(t.name)
        e.syscalls = (e.syscalls || 0) + p.syscalls
        e.wakes = (e.wakes || 0) + p.wakes
        if (USE_ALLOCS) e.allocs = (e.allocs || 0) + p.allocs
      }
      return { role, threads: d }
    })
    return { lib, p50, p99, wallUs, procs }
  } finally {
    server.child.kill()
  }
}

const fmt = (v) => v === undefined ? '—' : v.toFixed(2)

function print (r) {
  console.log(`\n${r.lib}: ${N} round trips of ${BYTES} B, ${INFLIGHT} in flight; p50 ${r.p50.toFixed(1)} µs, p99 ${r.p99.toFixed(1)} µs (wall, noisy)`)
  console.log(`  process  thread            vol.cs  invol.cs  syscalls  wakes-issued  cpu µs${USE_ALLOCS ? '   allocs' : ''}   (per round trip)`)
  const total = { vol: 0, invol: 0, syscalls: 0, wakes: 0, cpuNs: 0, allocs: 0 }
  const allocs = (d) => USE_ALLOCS ? ` ${fmt(d.allocs === undefined ? undefined : d.allocs / N).padStart(8)}` : ''
  for (const p of r.procs) {
    for (const [name, d] of [...p.threads].sort((a, b) => b[1].vol - a[1].vol)) {
      if (d.vol + d.invol === 0 && !d.syscalls) continue
      for (const k in total) total[k] += d[k] || 0
      console.log(`  ${p.role.padEnd(8)} ${name.padEnd(16)} ${fmt(d.vol / N).padStart(7)} ${fmt(d.invol / N).padStart(9)} ${fmt(d.syscalls === undefined ? undefined : d.syscalls / N).padStart(9)} ${fmt(d.wakes === undefined ? undefined : d.wakes / N).padStart(13)} ${fmt(d.cpuNs / 1e3 / N).padStart(7)}${allocs(d)}`)
    }
  }
  console.log(`  ${'total'.padEnd(25)} ${fmt(total.vol / N).padStart(7)} ${fmt(total.invol / N).padStart(9)} ${fmt(USE_PERF ? total.syscalls / N : undefined).padStart(9)} ${fmt(USE_PERF ? total.wakes / N : undefined).padStart(13)} ${fmt(total.cpuNs / 1e3 / N).padStart(7)}${allocs(total)}`)
}

async function main () {
  const libs = process.argv.slice(2).length ? process.argv.slice(2) : ['zerowire', 'net']
  for (const lib of libs) if (!LIBS[lib]) throw new Error(`unknown ${lib}: one of ${Object.keys(LIBS).join(', ')}`)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-wakeups-'))
  try {
    for (const lib of libs) {
      const r = await measure(lib, dir)
      if (process.env.WAKEUPS_JSON === '1') {
        const procs = r.procs.map((p) => ({ role: p.role, threads: Object.fromEntries([...p.threads].map(([k, v]) => [k, Object.fromEntries(Object.entries(v).map(([f, x]) => [f, f === 'threads' ? x : x / N]))])) }))
        console.log(JSON.stringify({ lib: r.lib, bytes: BYTES, inflight: INFLIGHT, n: N, p50: r.p50, p99: r.p99, procs }))
      } else {
        print(r)
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
