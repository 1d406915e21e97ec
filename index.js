'use strict'
// The public API: thin classes over the addon's free functions. Everything that may block or
// wait (the socket, batching, reconnecting, limits, timeouts) happens on a Rust thread; this
// file only hands buffers over and settles promises from the batches of events it gets back.

const { EventEmitter } = require('node:events')
const native = require('./zerowire.node')

const EV_REPLY = 0
const EV_ERROR_REPLY = 1
const EV_TIMEOUT = 2
const EV_PUSH = 3
const EV_CLOSED = 4
const EV_READY = 5
const EV_DISCONNECTED = 6

// Order matters: it is the order `clientCreate` reads them in.
const NUMERIC_OPTIONS = [
  'requestTimeoutMs',
  'sendHighWaterMark',
  'sendHighWaterBytes',
  'maxMessageBytes',
  'lingerMs',
  'reconnectIntervalMs',
  'reconnectMaxIntervalMs',
]

function codedError (Ctor, code, message, extra) {
  const err = new Ctor(message)
  err.code = code
  if (extra) Object.assign(err, extra)
  return err
}

function abortError (signal) {
  const err = new Error('The operation was aborted', { cause: signal.reason })
  err.name = 'AbortError'
  err.code = 'ABORT_ERR'
  return err
}

function readOptions (options) {
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options must be an object')
  }
  return NUMERIC_OPTIONS.map((name) => {
    const v = options[name]
    if (v === undefined) return NaN
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `options.${name} must be a finite number`)
    }
    return v
  })
}

// Clients still open when the process exits get a bounded, synchronous drain: what was queued
// is flushed for at most `lingerMs`, never forever.
const open = new Set()
let exitHookInstalled = false
function onProcessExit () {
  // Start every close first so their linger times run side by side, then wait for each.
  for (const client of open) native.clientClose(client._h)
  for (const client of open) client._closeSync()
}
function track (client) {
  open.add(client)
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', onProcessExit)
  }
}

class Client extends EventEmitter {
  /**
   * @param {string} endpoint ipc://path or tcp://host:port
   * @param {object} [options]
   */
  constructor (endpoint, options) {
    super()
    if (typeof endpoint !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'endpoint must be a string')
    }
    const numbers = readOptions(options)
    const name = options?.name
    if (name !== undefined && typeof name !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options.name must be a string')
    }
    this.endpoint = endpoint
    /** Server-assigned id, once a zerowire server acknowledged this connection. */
    this.clientId = undefined
    this.isReady = false
    this._pending = new Map()
    this._nextId = 1
    this._closed = false
    this._closedDone = false
    this._closePromise = null
    this._resolveClose = null
    this._refd = false
    this._h = native.clientCreate(endpoint, numbers, name, (batch) => this._onEvents(batch))
    // Messages of one tick are handed to the engine together, at the end of the tick.
    this._flush = () => native.clientFlush(this._h)
    track(this)
  }

  /**
   * Queues `raw` for the server and returns at once: true if queued, false if refused
   * because a high-water mark is reached (counted in stats().refused). Never waits.
   * A Buffer of 16 KiB or more is sent without a copy: do not modify it afterwards.
   */
  send (raw) {
    const r = native.clientSend(this._h, raw)
    if (r === 2) queueMicrotask(this._flush)
    return r !== 0
  }

  /**
   * Sends `raw` as a request and resolves with the reply (a string).
   * @param {string|Buffer|Uint8Array} raw
   * @param {{ timeoutMs?: number, signal?: AbortSignal }} [options]
   */
  request (raw, options) {
    let timeoutMs
    let signal
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') {
        return Promise.reject(codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options must be an object'))
      }
      timeoutMs = options.timeoutMs
      signal = options.signal
      if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs))) {
        return Promise.reject(codedError(RangeError, 'ERR_OUT_OF_RANGE', 'options.timeoutMs must be a positive number'))
      }
      if (signal !== undefined && (signal === null || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
        return Promise.reject(codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options.signal must be an AbortSignal'))
      }
      if (signal && signal.aborted) return Promise.reject(abortError(signal))
    }
    const id = this._nextId
    this._nextId = id === 0xffffffff ? 1 : id + 1
    let queued
    try {
      queued = native.clientRequest(this._h, id, raw, timeoutMs)
    } catch (err) {
      return Promise.reject(err)
    }
    if (queued === 2) queueMicrotask(this._flush)
    if (queued === 0) {
      return Promise.reject(codedError(Error, 'EFULL', 'request refused: the send queue is at its high-water mark'))
    }
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, signal: undefined, onAbort: undefined }
      if (signal) {
        entry.signal = signal
        entry.onAbort = () => {
          if (this._pending.delete(id)) {
            native.clientCancel(this._h, id)
            this._updateRef()
            reject(abortError(signal))
          }
        }
        signal.addEventListener('abort', entry.onAbort, { once: true })
      }
      this._pending.set(id, entry)
      if (!this._refd) this._updateRef()
    })
  }

  /** Counters from the engine, plus `pending` (requests awaiting a reply). */
  stats () {
    const s = native.clientStats(this._h)
    s.pending = this._pending.size
    return s
  }

  /**
   * Stops accepting messages, drains what is queued for at most `lingerMs`, then rejects the
   * requests still pending with ECLOSED. Resolves when the background thread has ended.
   */
  close () {
    if (this._closePromise) return this._closePromise
    this._closed = true
    this._closePromise = new Promise((resolve) => { this._resolveClose = resolve })
    native.clientClose(this._h)
    this._updateRef()
    return this._closePromise
  }

  _closeSync () {
    if (!this._closedDone) native.clientCloseSync(this._h)
  }

  _updateRef () {
    // Keep the process alive while a request or close() is outstanding, like a socket would.
    const want = !this._closedDone && (this._pending.size > 0 || this._closed)
    if (want !== this._refd) {
      this._refd = want
      native.clientRef(this._h, want)
    }
  }

  _settle (id, ok, value) {
    const entry = this._pending.get(id)
    if (entry === undefined) return
    this._pending.delete(id)
    if (entry.signal) entry.signal.removeEventListener('abort', entry.onAbort)
    if (ok) entry.resolve(value)
    else entry.reject(value)
  }

  _onEvents (batch) {
    let closed = false
    for (let i = 0; i < batch.length; i += 3) {
      const kind = batch[i]
      const id = batch[i + 1]
      if (kind === EV_REPLY) {
        this._settle(id, true, batch[i + 2])
      } else if (kind === EV_ERROR_REPLY) {
        this._settle(id, false, codedError(Error, 'EREMOTE', batch[i + 2]))
      } else if (kind === EV_TIMEOUT) {
        this._settle(id, false, codedError(Error, 'ETIMEDOUT', 'request timed out'))
      } else if (kind === EV_PUSH) {
        this.emit('message', batch[i + 2])
      } else if (kind === EV_CLOSED) {
        closed = true
      } else if (kind === EV_READY) {
        this.clientId = batch[i + 2]
        this.isReady = true
        this.emit('ready', { clientId: this.clientId, serverPid: id })
      } else if (kind === EV_DISCONNECTED) {
        this.isReady = false
        this.emit('disconnect')
      }
    }
    if (closed) this._onClosed()
    else if (this._refd && this._pending.size === 0 && !this._closed) this._updateRef()
  }

  _onClosed () {
    this._closedDone = true
    this._closed = true
    this.isReady = false
    open.delete(this)
    for (const id of [...this._pending.keys()]) {
      this._settle(id, false, codedError(Error, 'ECLOSED', 'client closed before the reply arrived'))
    }
    this._refd = false
    if (this._resolveClose) this._resolveClose()
    else this._closePromise = Promise.resolve()
    this.emit('close')
  }
}

module.exports = { Client }
