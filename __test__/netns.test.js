'use strict'
// tcp:// across two network namespaces joined by a veth pair, with delay and loss on the link,
// next to the same scenario over ipc://: traffic gets through, a cut link is noticed by the
// heartbeat and fails what is in flight (never hangs), the client comes back by itself and
// delivers what was queued meanwhile, and a restarted server is found again — with the same
// events and the same error codes on both transports.
//
// Client and server each run in their own process (the client in namespace A, the server in
// namespace B for tcp://), driven over stdin/stdout lines by __test__/netns/*.js. The
// namespaces are created here (root only; skipped with the reason otherwise) and removed in
// after(), also those a killed run left behind.
//
// Link impairment: netem (delay + loss) where the kernel has it. Where it does not (no
// sch_netem), loss comes from a classic-BPF tc filter that sends a random share of packets to
// an htb class whose queue holds nothing (pfifo limit 0), and delay from a userspace relay in
// namespace B (__test__/netns/relay.js) that holds every chunk for the same time in each
// direction. The test prints which one it used. The veths carry one wire packet per skb
// (gso_max_segs 1), so the loss share applies to packets, not to 64 KiB GSO batches.
//
// The cut: `ip link set down` on the client's end of the veth. Over ipc:// a SIGSTOPped server
// stands in for it: in both cases the connection stays open and falls silent, so only the
// heartbeat can tell.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const path = require('node:path')
const readline = require('node:readline')
const { tmpEndpoint, waitFor } = require('./helpers')

const PEERS = path.join(__dirname, 'netns')
const DELAY_MS = 20 // each way
const LOSS = 0.02 // each way
const CLIENT_OPTIONS = {
  heartbeatIntervalMs: 200,
  heartbeatTimeoutMs: 1500, // well above what a few lost segments cost (RTO 200 ms, doubling)
  reconnectIntervalMs: 50,
  reconnectMaxIntervalMs: 400,
  requestTimeoutMs: 20_000, // so an in-flight request can only end by a reset, not a timeout
}
const BOUND = 20_000 // the longest any single step may take before the test fails (not a timing claim)
const N = 2000 // fire-and-forget messages of ~1 KiB across the impaired link
const M = 100 // requests across it
const K = 300 // messages queued while the server is unreachable

const ID = process.pid
const NS_A = `zw-${ID}-a` // client
const NS_B = `zw-${ID}-b` // server
const IF_A = `zw${ID}a`
const IF_B = `zw${ID}b`
const ADDR_A = '10.231.0.1'
const ADDR_B = '10.231.0.2'
const PORT = 5555 // in a namespace of our own: no one else's
const UPSTREAM_PORT = 5556 // the server's port behind the relay (loopback of namespace B)

const children = new Set()

function run (cmd, args) {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString()
}
const ip = (...args) => run('ip', args)
const tc = (ns, ...args) => run('tc', ['-n', ns, ...args])
const quiet = (fn) => { try { fn() } catch {} }
const errText = (err) => String((err.stderr && err.stderr.toString().trim()) || err.message)

function alive (pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

/** Namespaces (and veths still in the root namespace) of runs killed before their cleanup. */
function removeLeftovers () {
  for (const line of ip('netns', 'list').split('\n')) {
    const m = /^zw-(\d+)-[ab]\b/.exec(line)
    if (m && (Number(m[1]) === ID || !alive(Number(m[1])))) quiet(() => ip('netns', 'del', m[0]))
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const m = /^\d+: (zw(\d+)[ab])[@:]/.exec(line)
    if (m && (Number(m[2]) === ID || !alive(Number(m[2])))) quiet(() => ip('link', 'del', m[1]))
  }
}

function teardown () {
  quiet(() => ip('netns', 'del', NS_A))
  quiet(() => ip('netns', 'del', NS_B))
  quiet(() => ip('link', 'del', IF_A))
}

/** Creates the two namespaces and the link; returns { skip } or the impairment in use. */
function setupNetns () {
  if (process.platform !== 'linux') return { skip: 'network namespaces are Linux-only' }
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { skip: 'creating network namespaces needs root; run the tests as root to include this one' }
  }
  try {
    ip('-V')
  } catch (err) {
    return { skip: `iproute2's ip is not usable here: ${errText(err)}` }
  }
  try {
    removeLeftovers()
    ip('netns', 'add', NS_A)
    ip('netns', 'add', NS_B)
    ip('link', 'add', IF_A, 'type', 'veth', 'peer', 'name', IF_B)
    ip('link', 'set', IF_A, 'netns', NS_A)
    ip('link', 'set', IF_B, 'netns', NS_B)
    ip('-n', NS_A, 'addr', 'add', `${ADDR_A}/30`, 'dev', IF_A)
    ip('-n', NS_B, 'addr', 'add', `${ADDR_B}/30`, 'dev', IF_B)
    for (const [ns, dev] of [[NS_A, IF_A], [NS_B, IF_B]]) {
      ip('-n', ns, 'link', 'set', 'lo', 'up')
      // One wire packet per skb (no TSO/GSO super-packets), so the loss applies per packet.
      ip('-n', ns, 'link', 'set', dev, 'gso_max_size', '1500', 'gso_max_segs', '1')
      ip('-n', ns, 'link', 'set', dev, 'up')
    }
  } catch (err) {
    teardown()
    return { skip: `network namespaces are not available here: ${errText(err)}` }
  }
  return impair()
}

/** Delay and loss on both ends of the veth: netem if the kernel has it, else tc bpf + relay. */
function impair () {
  const ends = [[NS_A, IF_A], [NS_B, IF_B]]
  let why
  try {
    for (const [ns, dev] of ends) {
      tc(ns, 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', `${DELAY_MS}ms`, 'loss', `${LOSS * 100}%`)
    }
    return { delay: `netem ${DELAY_MS} ms each way`, loss: `netem ${LOSS * 100}% each way`, relay: false, why: '' }
  } catch (err) {
    for (const [ns, dev] of ends) quiet(() => tc(ns, 'qdisc', 'del', 'dev', dev, 'root'))
    why = errText(err)
  }
  // Classic BPF: A = a random u32 (ancillary load SKF_AD_RANDOM); below the threshold the
  // packet goes to class 1:20, whose pfifo of limit 0 drops everything; else to 1:10.
  const threshold = Math.round(LOSS * 2 ** 32)
  const bytecode = `4,32 0 0 ${2 ** 32 - 0x1000 + 56},53 0 1 ${threshold},6 0 0 ${0x10010},6 0 0 ${0x10020}`
  let loss
  try {
    for (const [ns, dev] of ends) {
      tc(ns, 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '10')
      tc(ns, 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit')
      tc(ns, 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '10gbit')
      tc(ns, 'qdisc', 'add', 'dev', dev, 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '0')
      tc(ns, 'filter', 'add', 'dev', dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'bpf', 'bytecode', bytecode)
    }
    loss = `tc bpf random drop ${LOSS * 100}% each way (htb class with a pfifo of limit 0)`
  } catch (err) {
    for (const [ns, dev] of ends) quiet(() => tc(ns, 'qdisc', 'del', 'dev', dev, 'root'))
    loss = `none: neither netem nor cls_bpf works here (${errText(err)})`
  }
  return { delay: `userspace relay in ${NS_B}, ${DELAY_MS} ms each way`, loss, relay: true, why }
}

/** Packets sent and dropped (by the impairment) on both ends so far: the root qdiscs' counters. */
function linkCounters () {
  const total = { sent: 0, dropped: 0 }
  for (const [ns, dev] of [[NS_A, IF_A], [NS_B, IF_B]]) {
    const m = /Sent \d+ bytes (\d+) pkt \(dropped (\d+)/.exec(tc(ns, '-s', 'qdisc', 'show', 'dev', dev))
    if (m) {
      total.sent += Number(m[1])
      total.dropped += Number(m[2])
    }
  }
  return total
}

function withBound (promise, what, ms = BOUND) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

function spawnPeer (prefix, script, args) {
  const [cmd, ...pre] = [...prefix, process.execPath]
  const child = spawn(cmd, [...pre, path.join(PEERS, script), ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.add(child)
  child.on('exit', () => children.delete(child))
  child.exited = new Promise((resolve) => child.on('exit', resolve))
  child.lines = readline.createInterface({ input: child.stdout })
  return child
}

async function kill (child, signal = 'SIGKILL') {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal)
    await withBound(child.exited, 'killed child exit')
  }
}

/** A zerowire Server process counting 'log' messages. */
async function startServer (tr) {
  const child = spawnPeer(tr.prefixB, 'server.js', [tr.serverEndpoint])
  const waiters = []
  const bound = new Promise((resolve) => child.lines.once('line', resolve))
  child.lines.on('line', (line) => {
    if (line.startsWith('count ')) waiters.shift()(Number(line.slice(6)))
  })
  const line = await withBound(bound, 'server start')
  assert.match(line, /^bound /)
  return {
    child,
    count () {
      return withBound(new Promise((resolve) => {
        waiters.push(resolve)
        child.stdin.write('count\n')
      }), 'server count')
    },
    /** Polls until the server counted at least n, and returns what it counted. */
    async waitCount (n) {
      let last
      await waitFor(async () => (last = await this.count()) >= n, BOUND, 50).catch(() => {})
      return last
    },
  }
}

/** A zerowire Client process; records its 'ready'/'disconnect' events in order. */
function startClient (tr) {
  const child = spawnPeer(tr.prefixA, 'client.js', [tr.endpoint, JSON.stringify(CLIENT_OPTIONS)])
  const events = []
  const replies = [] // FIFO of waiters for 'sent' | 'stats' | 'closed'
  const settled = new Map()
  let nextId = 1
  let cursor = 0 // events before it are consumed by waitEvent
  child.lines.on('line', (line) => {
    const m = JSON.parse(line)
    if (m.ev === 'ready' || m.ev === 'disconnect') events.push(m.ev)
    else if (m.ev === 'settled') settled.get(m.id)(m)
    else replies.shift()(m)
  })
  const ask = (cmd) => new Promise((resolve) => {
    replies.push(resolve)
    child.stdin.write(JSON.stringify(cmd) + '\n')
  })
  return {
    child,
    events,
    async send (n, pad = 1000) {
      return (await withBound(ask({ op: 'send', n, pad }), 'send')).accepted
    },
    /** Resolves with { ok, reply } or { ok: false, code }; fails the test if it never settles. */
    request (body, timeoutMs) {
      const id = nextId++
      const p = new Promise((resolve) => settled.set(id, resolve))
      child.stdin.write(JSON.stringify({ op: 'request', id, body, timeoutMs }) + '\n')
      return withBound(p, `request ${body}`, BOUND + CLIENT_OPTIONS.requestTimeoutMs)
    },
    async stats () {
      return (await withBound(ask({ op: 'stats' }), 'stats')).stats
    },
    async close () {
      return (await withBound(ask({ op: 'close' }), 'close')).stats
    },
    /** Waits for the next `name` event after those already consumed. */
    async waitEvent (name) {
      const at = await withBound(waitFor(() => {
        const i = events.indexOf(name, cursor)
        return i >= 0 && i + 1
      }, BOUND + 1000), `client '${name}' event`)
      cursor = at
    },
  }
}

const echoBody = (i) => `{"type":"echo","i":${i}}`
const settleCode = (r) => (r.ok ? 'ok' : r.code)

/**
 * The scenario, the same for every transport. Returns its outcomes (events, error codes,
 * counts) for the comparison between transports; asserts them on the way.
 */
async function scenario (t, tr) {
  const out = {}
  let server = await startServer(tr)
  const client = startClient(tr)
  await client.waitEvent('ready')

  // (a) Fire-and-forget and request/reply get through.
  const accepted = await client.send(N)
  const replies = await Promise.all(Array.from({ length: M }, (_, i) => client.request(echoBody(i))))
  const wrong = replies.filter((r, i) => !(r.ok && r.reply === echoBody(i)))
  out.traffic = { accepted, counted: await server.waitCount(N), badReplies: wrong.length }
  assert.deepEqual(out.traffic, { accepted: N, counted: N, badReplies: 0 }, JSON.stringify(wrong.slice(0, 3)))
  if (tr.afterTraffic) tr.afterTraffic(t)

  // (b) The link goes dead with a request in flight: the heartbeat notices, the request fails
  // with ECONNRESET, a request made meanwhile times out, sends are queued.
  let s0 = await client.stats()
  const inflight = client.request('{"type":"slow"}')
  assert.equal((await client.request(echoBody(-1))).ok, true) // so 'slow' is on the wire
  let mark = client.events.length
  await tr.cut(server)
  await client.waitEvent('disconnect')
  const whileCut = client.request(echoBody(-2), 300)
  const queuedCut = await client.send(K)
  let s1 = await client.stats()
  out.cut = {
    events: client.events.slice(mark),
    inflight: settleCode(await inflight),
    whileCut: settleCode(await whileCut),
    detectedBy: s1.heartbeatTimeouts > s0.heartbeatTimeouts ? 'heartbeat' : 'socket',
    queued: queuedCut,
  }
  assert.deepEqual(out.cut, { events: ['disconnect'], inflight: 'ECONNRESET', whileCut: 'ETIMEDOUT', detectedBy: 'heartbeat', queued: K })

  // (c) The link comes back: the client reconnects by itself and delivers what was queued.
  mark = client.events.length
  await tr.restore(server)
  await client.waitEvent('ready')
  const afterRestore = await server.waitCount(N + K)
  const echo1 = await client.request(echoBody(1))
  out.restore = { events: client.events.slice(mark), delivered: afterRestore - N, echo: settleCode(echo1) }
  assert.deepEqual(out.restore, { events: ['ready'], delivered: K, echo: 'ok' })

  // (d) The server dies (SIGKILL) with a request in flight and comes back as a new process.
  s0 = await client.stats()
  const inflight2 = client.request('{"type":"slow"}')
  assert.equal((await client.request(echoBody(-3))).ok, true)
  mark = client.events.length
  await kill(server.child)
  await client.waitEvent('disconnect')
  const whileDead = client.request(echoBody(-4), 300)
  const queuedDead = await client.send(K)
  const deadCodes = { inflight: settleCode(await inflight2), whileDead: settleCode(await whileDead) }
  s1 = await client.stats()
  t.diagnostic(`${tr.name}: killed server noticed by the ${s1.heartbeatTimeouts > s0.heartbeatTimeouts ? 'heartbeat' : 'socket closing'}`)
  server = await startServer(tr)
  await client.waitEvent('ready')
  const afterRestart = await server.waitCount(K)
  const echo2 = await client.request(echoBody(2))
  out.restart = { events: client.events.slice(mark), ...deadCodes, queued: queuedDead, delivered: afterRestart, echo: settleCode(echo2) }
  assert.deepEqual(out.restart, { events: ['disconnect', 'ready'], inflight: 'ECONNRESET', whileDead: 'ETIMEDOUT', queued: K, delivered: K, echo: 'ok' })

  const final = await client.close()
  assert.equal(final.pending, 0)
  client.child.stdin.end()
  assert.equal(await withBound(client.child.exited, 'client exit'), 0)
  t.diagnostic(`${tr.name}: client stats ${JSON.stringify(final)}`)
  await kill(server.child)
  return out
}

const outcomes = {}
const setup = setupNetns()

test.after(async () => {
  for (const child of [...children]) await kill(child).catch(() => {})
  if (!setup.skip) teardown()
})

test('tcp:// across two network namespaces with delay and loss', { skip: setup.skip, timeout: 120_000 }, async (t) => {
  t.diagnostic(`link ${IF_A} (${NS_A}, client) <-> ${IF_B} (${NS_B}, server)`)
  t.diagnostic(`delay: ${setup.delay}`)
  t.diagnostic(`loss: ${setup.loss}`)
  if (setup.why) t.diagnostic(`netem unavailable: ${setup.why}`)
  const prefixA = ['ip', 'netns', 'exec', NS_A]
  const prefixB = ['ip', 'netns', 'exec', NS_B]
  if (setup.relay) {
    const relay = spawnPeer(prefixB, 'relay.js', [ADDR_B, String(PORT), '127.0.0.1', String(UPSTREAM_PORT), String(DELAY_MS)])
    assert.equal(await withBound(new Promise((resolve) => relay.lines.once('line', resolve)), 'relay start'), 'listening')
  }
  const before = linkCounters()
  outcomes.tcp = await scenario(t, {
    name: 'tcp',
    prefixA,
    prefixB,
    endpoint: `tcp://${ADDR_B}:${PORT}`,
    serverEndpoint: setup.relay ? `tcp://127.0.0.1:${UPSTREAM_PORT}` : `tcp://${ADDR_B}:${PORT}`,
    cut: () => ip('-n', NS_A, 'link', 'set', IF_A, 'down'),
    restore: () => ip('-n', NS_A, 'link', 'set', IF_A, 'up'),
    afterTraffic (t) {
      // The link really was lossy while the traffic crossed it.
      const now = linkCounters()
      const dropped = now.dropped - before.dropped
      t.diagnostic(`link during the traffic: ${now.sent - before.sent} packets sent, ${dropped} dropped by the impairment`)
      if (!setup.loss.startsWith('none')) assert.ok(dropped > 0, 'the impairment dropped nothing')
    },
  })
})

test('the same scenario over ipc:// (a hung server, SIGSTOP, stands for the cut link)', { timeout: 120_000 }, async (t) => {
  const ep = tmpEndpoint()
  outcomes.ipc = await scenario(t, {
    name: 'ipc',
    prefixA: [],
    prefixB: [],
    endpoint: ep,
    serverEndpoint: ep,
    cut: (server) => server.child.kill('SIGSTOP'),
    restore: (server) => server.child.kill('SIGCONT'),
  })
})

test('tcp:// across the impaired link and ipc:// give the same outcomes', { skip: setup.skip }, () => {
  assert.ok(outcomes.tcp && outcomes.ipc, 'both scenarios ran to the end')
  assert.deepEqual(outcomes.tcp, outcomes.ipc)
})
