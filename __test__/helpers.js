'use strict'
// Shared test plumbing: temp endpoints, a real libzmq peer (pyzmq) in a child process, and
// child Node processes for behaviour that only shows at process level (exit, keep-alive).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const ROOT = path.join(__dirname, '..')
const PYTHON = process.env.PYTHON || 'python3'

// Everything a test file writes (sockets, databases, logs) goes under one directory per test
// process, removed when the process exits: runs on a long-lived machine must not fill its /tmp.
let scratchRoot = null

/** A fresh directory (prefix + random suffix) under this process's scratch directory. */
function scratchDir (prefix = 'zw-') {
  if (scratchRoot === null) {
    scratchRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-test-'))
    // Others may pass through (a test runs a peer as another user), not list.
    fs.chmodSync(scratchRoot, 0o711)
    const root = scratchRoot
    process.once('exit', () => {
      // A tmpfs a failed test left mounted inside stays (EBUSY); everything else goes.
      try { fs.rmSync(root, { recursive: true, force: true, maxRetries: 2 }) } catch {}
    })
  }
  return fs.mkdtempSync(path.join(scratchRoot, prefix))
}

function tmpEndpoint (name = 's') {
  return `ipc://${path.join(scratchDir(), name + '.sock')}`
}

const PROTOS = ['ipc', 'tcp']

/**
 * The transports a transport-neutral test runs over, as zeromq.js does with
 * `testProtos("tcp", "ipc")`: `for (const proto of testProtos('ipc', 'tcp')) test(`[${proto}] …`)`.
 */
function testProtos (...protos) {
  for (const p of protos) if (!PROTOS.includes(p)) throw new Error(`unknown transport ${p}`)
  return protos
}

/**
 * An endpoint for a server to bind: a fresh ipc:// path, or tcp://127.0.0.1:0 (the OS picks a
 * free port, which the server reports in `server.endpoint`: give clients that one).
 */
function bindAddress (proto, name) {
  testProtos(proto)
  return proto === 'ipc' ? tmpEndpoint(name) : 'tcp://127.0.0.1:0'
}

// Ports handed out by uniqAddress are taken below the kernel's ephemeral range, so that no
// outgoing connection is given one of them between the test choosing it and binding it (a
// server restarted on the same port, a client connecting before its server exists).
const EPHEMERAL_LOW = (() => {
  try {
    return Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768
  } catch {
    return 32768
  }
})()
const PORT_LOW = 10_000
const portsGiven = new Set()

function canListen (port) {
  return new Promise((resolve) => {
    const probe = net.createServer()
    probe.once('error', () => resolve(false))
    probe.listen({ port, host: '127.0.0.1', exclusive: true }, () => probe.close(() => resolve(true)))
  })
}

/**
 * A fresh endpoint known before anything binds it: an ipc:// path, or tcp://127.0.0.1:<port>
 * with a port nothing listens on now and this process has not used before. Ports are picked at
 * random so that test runs sharing the machine rarely meet.
 */
async function uniqAddress (proto, name) {
  testProtos(proto)
  if (proto === 'ipc') return tmpEndpoint(name)
  for (let tries = 0; tries < 200; tries++) {
    const port = PORT_LOW + Math.floor(Math.random() * (EPHEMERAL_LOW - PORT_LOW))
    if (portsGiven.has(port)) continue
    portsGiven.add(port)
    if (await canListen(port)) return `tcp://127.0.0.1:${port}`
  }
  throw new Error('no free tcp port found')
}

/** What net.connect() / net.Server#listen() take for an ipc:// or tcp:// endpoint. */
function netAddress (endpoint) {
  if (endpoint.startsWith('ipc://')) return { path: endpoint.slice('ipc://'.length) }
  const m = /^tcp:\/\/(.+):(\d+)$/.exec(endpoint)
  if (!m) throw new Error(`not an ipc:// or tcp:// endpoint: ${endpoint}`)
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) }
}

/**
 * Starts the pyzmq ROUTER of __test__/peers/pyzmq_router.py bound to `endpoint` and resolves
 * once it is listening, with { endpoint, stop() }. Its stdin is a pipe we own, so it dies
 * with the test process whatever happens.
 */
function startPyRouter (endpoint) {
  const child = spawn(PYTHON, [path.join(__dirname, 'peers', 'pyzmq_router.py'), endpoint], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('pyzmq router did not start')), 10_000)
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`pyzmq router exited early (${code})`)))
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer)
      const [word, bound] = line.split(' ')
      if (word !== 'ready') return reject(new Error(`unexpected: ${line}`))
      child.removeAllListeners('exit')
      resolve({
        endpoint: bound,
        child,
        stop () {
          return new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve()
            child.once('exit', resolve)
            child.kill('SIGKILL')
          })
        },
      })
    })
  })
}

/**
 * Runs `source` as a CommonJS script in a fresh Node process (cwd = the package root) and
 * resolves with { code, signal, stdout, stderr, ms }. Kills it after `timeoutMs`.
 */
function runNode (source, { timeoutMs = 15_000, env = {} } = {}) {
  const started = process.hrtime.bigint()
  const child = spawn(process.execPath, ['-e', source], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  return new Promise((resolve) => {
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      const ms = Number(process.hrtime.bigint() - started) / 1e6
      resolve({ code, signal, stdout, stderr, ms, timedOut })
    })
  })
}

/** Asks the pyzmq router for what it counted, through a fresh zerowire client. */
async function routerStats (endpoint) {
  const { Client } = require(ROOT)
  const c = new Client(endpoint)
  try {
    return JSON.parse(await c.request('stats'))
  } finally {
    await c.close()
  }
}

/**
 * Waits until the router has counted `n` fire-and-forget bodies and returns its stats. A
 * ROUTER reads its connections in turn, so a fresh connection's "stats" request can overtake
 * what an older one still has in flight: poll rather than ask once.
 */
async function routerCount (endpoint, n, ms = 30_000) {
  let last
  try {
    return await waitFor(async () => {
      last = await routerStats(endpoint)
      return last.count >= n && last
    }, ms, 20)
  } catch {
    return last
  }
}

/** Polls `fn` until it returns a truthy value or `ms` passes. */
async function waitFor (fn, ms = 5000, step = 10) {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error('waitFor: condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, step))
  }
}

module.exports = { ROOT, scratchDir, tmpEndpoint, testProtos, bindAddress, uniqAddress, netAddress, startPyRouter, runNode, routerStats, routerCount, waitFor }
