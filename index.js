'use strict'
// The public API: thin classes over the addon's free functions. Everything that may block or
// wait (the socket, batching, reconnecting, limits, timeouts) happens on a Rust thread; this
// file only hands buffers over and settles promises from the batches of events it gets back.

const { EventEmitter } = require('node:events')
const { debuglog, getSystemErrorName, types: { isAnyArrayBuffer } } = require('node:util')
const native = require('./binding.js')

// NODE_DEBUG=zerowire: connects, disconnects, failed connects with their reason, drops.
const debug = debuglog('zerowire')
const DEBUG = debug.enabled

// Event kinds, numbered in Rust (src/client.rs, src/server.rs). A batch of events is
// [numbers, values…]: numbers a Uint32Array of five per event, [kind, a, b, c, d], then each
// event's strings or bodies in order (src/ffi/wakeup.rs, EventArray).
const {
  reply: EV_REPLY,
  errorReply: EV_ERROR_REPLY,
  timeout: EV_TIMEOUT,
  reset: EV_RESET,
  push: EV_PUSH,
  ready: EV_READY,
  disconnected: EV_DISCONNECTED,
  slow: EV_SLOW,
  dropped: EV_DROPPED,
  drain: EV_DRAIN,
  closed: EV_CLOSED,
  authFailed: EV_AUTH_FAILED,
  connectFailed: EV_CONNECT_FAILED,
  peerUid: EV_PEER_UID,
} = native.clientEventKinds()
const {
  connect: SV_CONNECT,
  message: SV_MESSAGE,
  disconnect: SV_DISCONNECT,
  closed: SV_CLOSED,
  packed: SV_PACKED,
  pack: SV_PACK,
  drain: SV_DRAIN,
  authorize: SV_AUTHORIZE,
  seq: SV_SEQ,
  sinkError: SV_SINK_ERROR,
  sinkRecovered: SV_SINK_RECOVERED,
} = native.serverEventKinds()

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

function isBytes (v) {
  return v instanceof Uint8Array
}

/**
 * A message as the addon takes it (a string or a Uint8Array), from anything `ws` hands a
 * handler (WebSocket.RawData): an ArrayBuffer is its bytes, an array of Buffers (a message's
 * fragments) one message of them all, in order.
 */
function payload (raw) {
  if (typeof raw === 'string' || raw instanceof Uint8Array) return raw
  if (isAnyArrayBuffer(raw)) return new Uint8Array(raw)
  if (Array.isArray(raw) && raw.length > 0 && raw.every(isBytes)) {
    return raw.length === 1 ? raw[0] : Buffer.concat(raw)
  }
  throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
    'the message must be a string, a Buffer, a Uint8Array, an ArrayBuffer or an array of Buffers')
}

/** The options object, or {}; its values are read and checked by name in Rust. */
function readOptions (options) {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object') {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options must be an object')
  }
  return options
}

// Clients and servers still open when the process exits get a bounded, synchronous drain:
// what was queued is flushed for at most `lingerMs`, never forever.
const open = new Set()
let exitHookInstalled = false
function onProcessExit () {
  // Start every close first so their linger times run side by side, then wait for each.
  for (const endpoint of open) endpoint._startClose()
  for (const endpoint of open) endpoint._closeSync()
}
function track (client) {
  open.add(client)
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', onProcessExit)
  }
}

// Node 20.0–20.3 predate Symbol.asyncDispose; Node's own polyfill registers this one.
const ASYNC_DISPOSE = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose')

/**
 * What a Client and a Server share: their native handle's close, started once and finished
 * when the engine thread has ended, and the bounded drain at process exit.
 */
class NativeHandle extends EventEmitter {
  constructor (close, closeSync) {
    super()
    this._nativeClose = close
    this._nativeCloseSync = closeSync
  }

  close () {
    if (this._closePromise) return this._closePromise
    this._closePromise = new Promise((resolve) => { this._resolveClose = resolve })
    this._nativeClose(this._h)
    return this._closePromise
  }

  /** `await using client = new Client(…)`: closes it (drained, at most lingerMs) on scope exit. */
  [ASYNC_DISPOSE] () {
    return this.close()
  }

  _startClose () {
    this._nativeClose(this._h)
  }

  _closeSync () {
    if (!this._closedDone) this._nativeCloseSync(this._h)
  }

  /** The engine thread has ended: close() resolves and 'close' is emitted. */
  _finishClose () {
    this._closedDone = true
    open.delete(this)
    if (this._resolveClose) this._resolveClose()
    else this._closePromise = Promise.resolve()
    this.emit('close')
  }
}

class Client extends NativeHandle {
  /**
   * @param {string|string[]} endpoint ipc://path or tcp://host:port, or several: sends go
   *   round-robin over the connected ones and fail over when one goes down.
   * @param {object} [options]
   */
  constructor (endpoint, options) {
    super(native.clientClose, native.clientCloseSync)
    const endpoints = typeof endpoint === 'string' ? [endpoint] : endpoint
    if (!Array.isArray(endpoints) || endpoints.length === 0 ||
        !endpoints.every((e) => typeof e === 'string' && !e.includes('\n'))) {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'endpoint must be a string or a non-empty array of strings')
    }
    const opts = readOptions(options)
    /** The first endpoint (all of them are in `endpoints`). */
    this.endpoint = endpoints[0]
    this.endpoints = endpoints.slice()
    this._readyLinks = new Set()
    /** Server-assigned id, once a zerowire server acknowledged this connection. */
    this.clientId = undefined
    this.isReady = false
    this._pending = new Map()
    this._nextId = 1
    this._closed = false
    this._refd = false
    this._readers = 0 // open push iterators
    // One string for the binding; no endpoint can contain a newline.
    this._h = native.clientCreate(endpoints.join('\n'), opts, (batch) => this._onEvents(batch))
    // Only kept when someone may ask which request was slow (the option is valid by now).
    this._keepRaw = opts.slowRequestMs > 0
    // Messages of one tick are handed to the engine together, at the end of the tick.
    this._flush = () => native.clientFlush(this._h)
    track(this)
  }

  /**
   * Queues `raw` for the server and returns at once: true if queued, false if refused
   * because a high-water mark is reached (counted in stats().refused; 'drain' follows once
   * the queue is down to half its marks). Never waits.
   * A Buffer is copied during the call; a view of a SharedArrayBuffer of 16 KiB or more is
   * sent without a copy (its bytes are read when the engine writes them).
   */
  send (raw) {
    const r = native.clientSend(this._h, payload(raw))
    if (r === 2) queueMicrotask(this._flush)
    return r !== 0
  }

  /**
   * Sends `raw` as a request and resolves with the reply (a string).
   * @param {string|Buffer|Uint8Array} raw
   * `retries` (idempotent requests only): send again up to that many times when an attempt
   * times out (each attempt gets `timeoutMs`) or its connection goes down.
   * @param {{ timeoutMs?: number, signal?: AbortSignal, retries?: number }} [options]
   */
  request (raw, options) {
    let timeoutMs
    let signal
    let retries = 0
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') {
        return Promise.reject(codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options must be an object'))
      }
      timeoutMs = options.timeoutMs
      signal = options.signal
      if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs))) {
        return Promise.reject(codedError(RangeError, 'ERR_OUT_OF_RANGE', 'options.timeoutMs must be a positive number'))
      }
      if (options.retries !== undefined) {
        retries = options.retries
        if (!Number.isInteger(retries) || retries < 0 || retries > 1000) {
          return Promise.reject(codedError(RangeError, 'ERR_OUT_OF_RANGE', 'options.retries must be an integer 0..1000'))
        }
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
      queued = native.clientRequest(this._h, id, payload(raw), timeoutMs, retries)
    } catch (err) {
      return Promise.reject(err)
    }
    if (queued === 2) queueMicrotask(this._flush)
    if (queued === 0) {
      return Promise.reject(codedError(Error, 'EFULL', 'request refused: the send queue is at its high-water mark'))
    }
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, signal: undefined, onAbort: undefined, raw: this._keepRaw ? raw : undefined }
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

  /**
   * The server's pushes as an async iterator: `for await (const msg of client)`. It ends when
   * the client closes (after the pushes that came before), or on `break`. Pushes wait for the
   * loop in memory, at most `highWaterMark` of them (default 1000); one more ends the loop
   * with an error (code ERR_ZEROWIRE_OVERFLOW) once those already waiting are read, rather
   * than growing without bound or losing pushes silently. While one is open the client keeps
   * the process alive, as a socket being read does.
   * @param {{ highWaterMark?: number }} [options]
   */
  messages (options) {
    return new PushIterator(this, options?.highWaterMark ?? 1000)
  }

  [Symbol.asyncIterator] () {
    return this.messages()
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
    const closing = super.close()
    this._updateRef()
    return closing
  }

  _updateRef () {
    // Keep the process alive while a request or close() is outstanding, like a socket would.
    const want = !this._closedDone && (this._pending.size > 0 || this._closed || this._readers > 0)
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
    const numbers = batch[0]
    let next = 1
    let closed = false
    for (let i = 0; i < numbers.length; i += 5) {
      const kind = numbers[i]
      const a = numbers[i + 1]
      if (kind === EV_REPLY) {
        this._settle(a, true, batch[next++])
      } else if (kind === EV_ERROR_REPLY) {
        this._settle(a, false, codedError(Error, 'EREMOTE', batch[next++]))
      } else if (kind === EV_TIMEOUT) {
        this._settle(a, false, this._timedOut())
      } else if (kind === EV_RESET) {
        this._settle(a, false, codedError(Error, 'ECONNRESET', 'the connection went down before the reply'))
      } else if (kind === EV_AUTH_FAILED) {
        this._settle(a, false, codedError(Error, 'EAUTH', 'no server completed the CURVE handshake (wrong server key, this client\'s key refused, or a server without CURVE): the request was not sent'))
      } else if (kind === EV_PEER_UID) {
        this._settle(a, false, codedError(Error, 'ERR_ZEROWIRE_PEER_UID', 'no ipc server ran as a uid expectServerUid allows: the request was not sent'))
      } else if (kind === EV_PUSH) {
        this.emit('message', batch[next++])
      } else if (kind === EV_CLOSED) {
        closed = true
      } else if (kind === EV_READY) {
        // a: the endpoint's index, b: the server's pid; the value: our client id.
        this.clientId = batch[next++]
        this._readyLinks.add(a)
        this.isReady = true
        this._connectError = undefined
        if (DEBUG) debug('client: connected to %s (client id %s, server pid %d)', this.endpoints[a], this.clientId, numbers[i + 2])
        this.emit('ready', { clientId: this.clientId, serverPid: numbers[i + 2], endpoint: this.endpoints[a] })
      } else if (kind === EV_DISCONNECTED) {
        this._readyLinks.delete(a)
        this.isReady = this._readyLinks.size > 0
        if (DEBUG) debug('client: disconnected from %s, reconnecting', this.endpoints[a])
        this.emit('disconnect', { endpoint: this.endpoints[a] })
      } else if (kind === EV_CONNECT_FAILED) {
        // c: bit 0 timed out, bit 1 the security handshake failed, bit 2 the server's uid
        // was refused (expectServerUid).
        this._connectFailed(this.endpoints[a], numbers[i + 2], numbers[i + 3], numbers[i + 4], batch[next++])
      } else if (kind === EV_SLOW) {
        // Comes just before the reply's own event, so the request is still pending here.
        const entry = this._pending.get(a)
        const micros = numbers[i + 2] + numbers[i + 3] * 2 ** 32
        this.emit('slow', { ms: micros / 1000, request: entry?.raw })
      } else if (kind === EV_DROPPED) {
        const info = { reason: batch[next++], count: a + numbers[i + 2] * 2 ** 32 }
        if (DEBUG) debug('client: dropped %d sends (%s)', info.count, info.reason)
        this.emit('drop', info)
      } else if (kind === EV_DRAIN) {
        this.emit('drain')
      }
    }
    if (closed) this._onClosed()
    else if (this._refd && this._pending.size === 0 && !this._closed) this._updateRef()
  }

  /**
   * An attempt to connect failed: 'connectError' with the reason (a mistyped ipc:// path is
   * ENOENT; nobody accepting in time, ETIMEDOUT). The client keeps trying by itself.
   */
  _connectFailed (endpoint, errno, how, retryMs, message) {
    let code = 'ECONNFAILED'
    if (how & 4) code = 'ERR_ZEROWIRE_PEER_UID'
    else if (how & 2) code = 'EAUTH'
    else if (how & 1) code = 'ETIMEDOUT'
    else if (errno > 0 && process.platform !== 'win32') {
      try { code = getSystemErrorName(-errno) } catch {}
    }
    if (DEBUG) debug('client: connect to %s failed: %s (%s), next attempt in %d ms', endpoint, code, message, retryMs)
    const err = codedError(Error, code, `connect to ${endpoint} failed: ${message}`, { endpoint, retryInMs: retryMs })
    if (errno > 0) err.errno = errno
    this._connectError = err
    this.emit('connectError', err)
  }

  /** A request's ETIMEDOUT; while never connected, it says why (the last failed connect). */
  _timedOut () {
    const last = this._connectError === undefined || native.clientStats(this._h).connected ? undefined : this._connectError
    if (last === undefined) return codedError(Error, 'ETIMEDOUT', 'request timed out')
    return codedError(Error, 'ETIMEDOUT', `request timed out; not connected: ${last.message} (${last.code})`, { cause: last })
  }

  _onClosed () {
    this._closedDone = true
    this._closed = true
    this.isReady = false
    this._readyLinks.clear()
    for (const id of [...this._pending.keys()]) {
      this._settle(id, false, codedError(Error, 'ECLOSED', 'client closed before the reply arrived'))
    }
    this._refd = false
    this._finishClose()
  }
}

/** What `client.messages()` returns: pushes from 'message' events, in order, bounded. */
class PushIterator {
  constructor (client, highWaterMark) {
    if (!Number.isInteger(highWaterMark) || highWaterMark < 1) {
      throw codedError(RangeError, 'ERR_OUT_OF_RANGE', 'options.highWaterMark must be a positive integer')
    }
    this._client = client
    this._highWaterMark = highWaterMark
    this._queue = []
    this._waiting = [] // resolvers of next() calls made before a push came
    this._error = null
    this._open = false
    this._onMessage = (raw) => {
      if (this._waiting.length > 0) {
        this._waiting.shift()({ value: raw, done: false })
      } else if (this._queue.length < this._highWaterMark) {
        this._queue.push(raw)
      } else {
        this._error = codedError(Error, 'ERR_ZEROWIRE_OVERFLOW',
          `${this._highWaterMark} pushes waited unread (the iterator's highWaterMark); the iteration ends here`)
        this._detach()
      }
    }
    this._onClose = () => this._detach()
    if (client._closedDone) return
    this._open = true
    client.on('message', this._onMessage)
    client.on('close', this._onClose)
    client._readers++
    client._updateRef()
  }

  next () {
    if (this._queue.length > 0) return Promise.resolve({ value: this._queue.shift(), done: false })
    if (this._error !== null) {
      const err = this._error
      this._error = null
      return Promise.reject(err)
    }
    if (!this._open) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve) => this._waiting.push(resolve))
  }

  /** `break` out of the loop: stop listening and forget what waited. */
  return () {
    this._detach()
    this._queue.length = 0
    this._error = null
    return Promise.resolve({ value: undefined, done: true })
  }

  [Symbol.asyncIterator] () {
    return this
  }

  _detach () {
    if (!this._open) return
    this._open = false
    const client = this._client
    client.removeListener('message', this._onMessage)
    client.removeListener('close', this._onClose)
    client._readers--
    client._updateRef()
    // Nothing was queued for these (they waited on an empty queue): they end now.
    const waiting = this._waiting
    this._waiting = []
    for (const resolve of waiting) resolve({ value: undefined, done: true })
  }
}

// Small Buffer bodies are packed end to end into shared Buffers, each in the slot of an
// SV_PACK event before the SV_PACKED events cut from it (src/server.rs); a server event's
// numbers are [kind, client, route, token, packed length].
const NO_ROUTE = 0
// How many string/body slots each kind of event takes in a batch (packed bodies take none;
// an SV_PACK's one is taken where it is read).
const SLOTS = []
SLOTS[SV_MESSAGE] = 1
SLOTS[SV_PACKED] = 0
SLOTS[SV_CONNECT] = 3
SLOTS[SV_DISCONNECT] = 1
SLOTS[SV_CLOSED] = 0
SLOTS[SV_DRAIN] = 0
SLOTS[SV_AUTHORIZE] = 2
SLOTS[SV_SEQ] = 0
SLOTS[SV_SINK_ERROR] = 2
SLOTS[SV_SINK_RECOVERED] = 1

/** What a handler gets with each message. One object per message, methods on the prototype. */
class Context {
  constructor (server, clientId, token, peer, numbers, seqAt) {
    this.clientId = clientId
    /** Under CURVE, the client's long-term public key (Z85) it proved in the handshake. */
    this.publicKey = peer === undefined ? undefined : peer.publicKey
    /** On ipc, the client process's uid and pid, from the kernel (SO_PEERCRED). */
    this.uid = peer === undefined ? undefined : peer.uid
    this.pid = peer === undefined ? undefined : peer.pid
    this._server = server
    this._token = token
    // The batch's numbers and where this message's SV_SEQ event is in them (-1: none); read
    // only if a handler asks.
    this._numbers = numbers
    this._seqAt = seqAt
  }

  /**
   * True when an earlier server process (or connection) may have handled this message
   * already: the client sent it again after losing the connection it first went out on.
   */
  get redelivered () {
    return this._seqAt >= 0 && (this._numbers[this._seqAt + 4] >>> 31) === 1
  }

  /**
   * `<client session, 16 hex digits>:<seq>`, the same every time this message is delivered;
   * undefined for requests and for clients that do not number their sends.
   */
  get messageId () {
    if (this._seqAt < 0) return undefined
    const n = this._numbers
    const at = this._seqAt
    const session = n[at + 1].toString(16).padStart(8, '0') + n[at + 2].toString(16).padStart(8, '0')
    const high = n[at + 4] & 0x7fffffff
    const seq = high < 0x200000 ? String(high * 0x100000000 + n[at + 3]) : String((BigInt(high) << 32n) | BigInt(n[at + 3]))
    return session + ':' + seq
  }

  /** True when the sender awaits a reply (client.request). */
  get isRequest () {
    return this._token !== 0
  }

  /**
   * Answers the request (for handlers that answer later instead of returning the reply).
   * Returns false if it was already answered or is not a request.
   */
  reply (raw) {
    return this._answer(raw, false)
  }

  _answer (raw, isError) {
    const token = this._token
    if (token === 0) return false
    // After close() a reply can no longer go out: say so (false) rather than throw from
    // inside a handler, where the error would abandon the rest of the batch.
    if (this._server._closePromise) {
      this._token = 0
      return false
    }
    // A reply the native side refuses (too large, not a payload) throws before the request
    // is spent: the caller may still answer it.
    const r = native.serverReply(this._server._h, token, payload(raw), isError)
    this._token = 0
    if (r === 2) queueMicrotask(this._server._flush)
    return r !== 0
  }

  _fail (err) {
    const message = err instanceof Error ? err.message : String(err)
    return this._answer(message || 'handler failed', true)
  }
}

class Server extends NativeHandle {
  /**
   * Binds now: a taken address (EADDRINUSE), an ipc path over the OS limit (ENAMETOOLONG) or a
   * bad option throws here.
   * @param {string} endpoint ipc://path or tcp://host:port (port 0 picks a free one)
   * @param {object} [options]
   */
  constructor (endpoint, options) {
    super(native.serverClose, native.serverCloseSync)
    if (typeof endpoint !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'endpoint must be a string')
    }
    const opts = readOptions(options)
    // A function decides here, on the JS thread; Rust holds the client's messages until it has.
    this._authorize = typeof opts.authorize === 'function' ? opts.authorize : null
    // Under CURVE, or on ipc: client index → { publicKey, uid, pid } (what Rust recorded of
    // its connection), for every ctx.
    this._peers = new Map()
    this._handlers = [undefined] // index 0: no route (the 'message' event)
    this._routes = new Map() // name → index
    this._sinkPaths = new Map() // sink route name → its database path
    this._clients = new Map() // index → clientId
    this._byId = new Map() // clientId → index
    this._closePromise = null
    this._resolveClose = null
    this._closedDone = false
    this._h = native.serverCreate(endpoint, opts, (batch) => this._onEvents(batch))
    // Reading starts once this tick is over: routes registered right after `new Server()`
    // are in place before the first message (a reconnecting client may be there at once).
    queueMicrotask(() => { if (!this._closePromise) native.serverStart(this._h) })
    this._flush = () => native.serverFlush(this._h)
    // Made once: a closure per message showed in profiles of the 'message' path.
    this._emitMessage = (raw, ctx) => { this.emit('message', raw, ctx) }
    /** The bound endpoint (with the real port when bound to tcp://…:0). */
    this.endpoint = native.serverEndpoint(this._h)
    track(this)
  }

  /**
   * Messages whose top-level type field equals `name` go to `handler(raw, ctx)`. For a
   * request, the handler's return value (string | Buffer | Promise of one) is the reply; a
   * throw or rejection answers with an error reply (the client's request rejects, EREMOTE).
   */
  route (name, handler) {
    if (typeof name !== 'string' || name === '') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'the route name must be a non-empty string')
    }
    if (this._closePromise) throw codedError(Error, 'ECLOSED', 'closed: close() was called')
    if (handler === undefined) return new Route(this, name)
    if (typeof handler !== 'function') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'the handler must be a function')
    }
    const existing = this._routes.get(name)
    if (existing !== undefined) {
      this._handlers[existing] = handler
    } else {
      const index = this._handlers.push(handler) - 1
      this._routes.set(name, index)
      native.serverRoute(this._h, name, index)
    }
    return this
  }

  /** Pushes `raw` to one client ('message' event there). False if unknown or refused. */
  sendTo (clientId, raw) {
    const body = payload(raw)
    const index = this._byId.get(clientId)
    if (index === undefined) return false
    const r = native.serverSendTo(this._h, index, body)
    if (r === 2) queueMicrotask(this._flush)
    return r !== 0
  }

  /** Pushes `raw` to every connected client; returns how many it was queued for. */
  broadcast (raw) {
    const n = this._clients.size
    const r = native.serverBroadcast(this._h, payload(raw))
    if (r === 2) queueMicrotask(this._flush)
    return r === 0 ? 0 : n
  }

  /** Ids of the connected clients. */
  clients () {
    return [...this._byId.keys()]
  }

  stats () {
    return native.serverStats(this._h)
  }

  /** Stops, writes what is queued (at most lingerMs), closes the socket and removes its file. */
  close () {
    return super.close()
  }

  _onEvents (batch) {
    const numbers = batch[0]
    let packed = null // the shared Buffer the next packed bodies are cut from
    let next = 1 // the next string or body
    let at = 0 // where the next packed body starts
    let seqAt = -1 // the SV_SEQ event of the next message, if it has one
    for (let i = 0; i < numbers.length; i += 5) {
      const kind = numbers[i]
      if (kind === SV_PACK) {
        packed = batch[next++]
        at = 0
        continue
      }
      if (kind === SV_SEQ) {
        seqAt = i
        continue
      }
      try {
        this._onEvent(batch, numbers, i, packed, next, at, seqAt)
      } catch (err) {
        // A throwing 'connect'/'disconnect'/'close' listener must not take the rest of the
        // batch with it (those events would be lost, yet acked to their clients). It still
        // surfaces as an uncaught exception, as any listener's would.
        process.nextTick(() => { throw err })
      }
      // Advanced here, so an event that threw halfway cannot shift the ones after it.
      if (kind === SV_PACKED) at += numbers[i + 4]
      else next += SLOTS[kind]
      seqAt = -1
    }
  }

  /** One event of a batch; its strings or body start at batch[next]. */
  _onEvent (batch, numbers, i, packed, next, at, seqAt) {
    const kind = numbers[i]
    const client = numbers[i + 1]
    if (kind === SV_MESSAGE) {
      this._dispatch(numbers[i + 2], client, numbers[i + 3], batch[next], numbers, seqAt)
    } else if (kind === SV_PACKED) {
      // Buffer.from(arrayBuffer, offset, length) is a plain view; subarray() goes through the
      // species constructor and cost ≈ 3× more per message here.
      this._dispatch(numbers[i + 2], client, numbers[i + 3], Buffer.from(packed.buffer, packed.byteOffset + at, numbers[i + 4]), numbers, seqAt)
    } else if (kind === SV_CONNECT) {
      const info = parseHello(batch[next])
      const id = batch[next + 1]
      const publicKey = batch[next + 2]
      this._clients.set(client, id)
      this._byId.set(id, client)
      const peer = peerOf(publicKey, numbers, i)
      if (peer !== undefined) {
        // The kernel's pid, not the one the hello announced.
        Object.assign(info, peer)
        this._peers.set(client, peer)
      }
      if (DEBUG) debug('server %s: client %s connected %j', this.endpoint, id, info)
      this.emit('connect', id, info)
    } else if (kind === SV_DISCONNECT) {
      const reason = batch[next]
      const id = this._clients.get(client)
      if (id === undefined) return
      this._clients.delete(client)
      this._byId.delete(id)
      this._peers.delete(client)
      if (DEBUG) debug('server %s: client %s disconnected (%s)', this.endpoint, id, reason)
      this.emit('disconnect', id, reason)
    } else if (kind === SV_AUTHORIZE) {
      const publicKey = batch[next] === undefined ? null : batch[next]
      const info = { publicKey, socketType: batch[next + 1] }
      const peer = peerOf(undefined, numbers, i)
      if (peer !== undefined) Object.assign(info, peer)
      this._decide(client, publicKey, info)
    } else if (kind === SV_DRAIN) {
      this.emit('drain')
    } else if (kind === SV_SINK_ERROR) {
      this._sinkFailed(batch[next], batch[next + 1])
    } else if (kind === SV_SINK_RECOVERED) {
      const route = batch[next]
      if (DEBUG) debug('server %s: sink of route %s writes again', this.endpoint, route)
      this.emit('sinkRecovered', { route, path: this._sinkPaths.get(route) })
    } else if (kind === SV_CLOSED) {
      this._finishClose()
    }
  }

  /**
   * Asks the `authorize` function about a CURVE client or an ipc peer (`request` names it to
   * Rust). Anything but `true` (or a Promise of it) refuses: a throw, a rejection, a server
   * closed meanwhile.
   */
  _decide (request, publicKey, info) {
    const answer = (allow) => {
      if (!this._closePromise) native.serverAuthorize(this._h, request, allow === true)
    }
    const refuse = (err) => {
      answer(false)
      if (this.listenerCount('error') > 0) this.emit('error', err)
      else process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'ZerowireAuthorizeWarning')
    }
    let result
    try {
      result = this._authorize === null ? false : this._authorize(publicKey, info)
    } catch (err) {
      refuse(err)
      return
    }
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      result.then(answer, refuse)
    } else {
      answer(result)
    }
  }

  _dispatch (route, client, token, raw, numbers, seqAt) {
    const ctx = new Context(this, this._clients.get(client), token, this._peers.get(client), numbers, seqAt)
    const handler = this._handlers[route]
    if (handler === undefined || route === NO_ROUTE) {
      if (this.listenerCount('message') > 0) {
        this._run(this._emitMessage, raw, ctx)
      } else if (token !== 0) {
        ctx._fail(new Error('no route for this message'))
      } else if (DEBUG) {
        debug('server %s: no route for a message from client %s; dropped (a \'message\' listener gets these)', this.endpoint, ctx.clientId)
      }
      return
    }
    this._run(handler, raw, ctx)
  }

  _run (handler, raw, ctx) {
    let result
    try {
      result = handler(raw, ctx)
    } catch (err) {
      this._handlerFailed(err, ctx)
      return
    }
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      result.then((value) => this._answer(value, ctx), (err) => this._handlerFailed(err, ctx))
    } else {
      this._answer(result, ctx)
    }
  }

  _answer (value, ctx) {
    if (value === undefined || ctx._token === 0) return
    let body
    try {
      body = payload(value)
    } catch {
      ctx._fail(new TypeError(`the handler returned ${typeof value}; a reply must be a string or a Buffer`))
      return
    }
    try {
      ctx._answer(body, false)
    } catch (err) {
      // Too large to send (EMSGSIZE, counted as tooLarge): the client gets the reason as an
      // error reply (EREMOTE) instead of waiting out its timeout, and the process lives.
      ctx._fail(err)
    }
  }

  /**
   * A sink cannot write (once per episode): its rows are kept and written again, nothing is
   * acked meanwhile and the socket is not read. 'error' listeners hear of it, or it becomes a
   * process warning: a full disk must not kill the server holding the rows.
   */
  _sinkFailed (route, message) {
    const err = codedError(Error, 'ERR_ZEROWIRE_SINK', `sink of route ${JSON.stringify(route)} cannot write, retrying: ${message}`)
    err.route = route
    err.path = this._sinkPaths.get(route)
    if (DEBUG) debug('server %s: %s', this.endpoint, err.message)
    if (this.listenerCount('error') > 0) this.emit('error', err)
    else process.emitWarning(err.message, { type: 'ZerowireSinkWarning', code: err.code })
  }

  _handlerFailed (err, ctx) {
    // A request gets the error as its reply; a fire-and-forget handler's error goes to
    // 'error' listeners (or becomes a process warning): it never kills the server.
    if (ctx._token !== 0) {
      ctx._fail(err)
      return
    }
    if (this.listenerCount('error') > 0) this.emit('error', err, ctx)
    else process.emitWarning(err instanceof Error ? err : new Error(String(err)), 'ZerowireHandlerWarning')
  }
}

/** `server.route(name)` without a handler: a route served by Rust instead of JS. */
class Route {
  constructor (server, name) {
    this.server = server
    this.name = name
  }

  /**
   * Messages of this type are stored in the SQLite database at `path` (created if missing;
   * table `options.table`, default 'logs': id, received_at, client_id, raw) by a Rust
   * thread, in batched transactions. They never wake JS. A send is acked to its client, and
   * a request of this type answered with an empty reply, only once its row is committed.
   * A failed commit is retried with a backoff while the server stops reading; 'error'
   * (code ERR_ZEROWIRE_SINK) once per episode, 'sinkRecovered' at its end. server.close()
   * writes every row read before it. Opens the file now: a bad path or a file that cannot be
   * written throws (code ERR_ZEROWIRE_SINK). Returns the server.
   */
  toSqlite (path, options) {
    if (typeof path !== 'string' || path === '') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'path must be a non-empty string')
    }
    const table = options?.table ?? 'logs'
    if (typeof table !== 'string') {
      throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', 'options.table must be a string')
    }
    native.serverSinkSqlite(this.server._h, this.name, path, table)
    this.server._sinkPaths.set(this.name, path)
    // A later route(name, handler) must register anew to take the route back from the sink.
    this.server._routes.delete(this.name)
    return this.server
  }
}

/** The client's hello: { pid, ppid?, name? }; {} for clients without the control protocol. */
/**
 * What a connect or authorize event says of the peer: its CURVE key, and on ipc its uid and
 * pid (the event's numbers: [kind, client, uid, pid, known], known bit 0 the uid, bit 1 the
 * pid). Undefined when it says nothing.
 */
function peerOf (publicKey, numbers, i) {
  const known = numbers[i + 4]
  if (publicKey === undefined && known === 0) return undefined
  const peer = {}
  if (publicKey !== undefined) peer.publicKey = publicKey
  if (known & 1) peer.uid = numbers[i + 2]
  if (known & 2) peer.pid = numbers[i + 3]
  return peer
}

function parseHello (json) {
  if (json === undefined) return {}
  try {
    const h = JSON.parse(json)
    const info = {}
    if (Number.isInteger(h.pid)) info.pid = h.pid
    if (Number.isInteger(h.ppid)) info.ppid = h.ppid
    if (typeof h.name === 'string') info.name = h.name
    return info
  } catch {
    return {}
  }
}

module.exports = { Client, Server, curveKeypair: native.curveKeypair }
