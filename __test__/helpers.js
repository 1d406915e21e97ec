'use strict'
// Shared test plumbing: temp endpoints, a real libzmq peer (pyzmq) in a child process, and
// child Node processes for behaviour that only shows at process level (exit, keep-alive).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const ROOT = path.join(__dirname, '..')
const PYTHON = process.env.PYTHON || 'python3'

function tmpEndpoint (name = 's') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-'))
  return `ipc://${path.join(dir, name + '.sock')}`
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

module.exports = { ROOT, tmpEndpoint, startPyRouter, runNode, routerStats, routerCount, waitFor }
