// Type definitions for zerowire. index.js is a thin class over the native addon; these types
// describe that class. __test__/types.test.js checks that every declared member exists.

import { EventEmitter } from 'node:events'

/**
 * What `ws` hands a `'message'` listener (its `WebSocket.RawData`, by `binaryType`): a Buffer,
 * an ArrayBuffer, or the message's fragments.
 */
export type RawData = Buffer | ArrayBuffer | Buffer[]

/**
 * Anything `send()`, `request()`, `ctx.reply()`, `sendTo()` and `broadcast()` accept as one
 * message: a string (sent as UTF-8), bytes, an ArrayBuffer (its bytes), or an array of Buffers
 * (fragments, sent as one message of them all, in order) — so a `ws` listener's data goes as
 * it is.
 */
export type Payload = string | Uint8Array | ArrayBuffer | SharedArrayBuffer | RawData | readonly Uint8Array[]

/**
 * The `code` of an error zerowire throws, rejects with or emits. `'connectError'` errors carry
 * the OS's code (ENOENT, ECONNREFUSED, …), hence the open end.
 */
export type ZerowireErrorCode =
  | 'ETIMEDOUT' | 'ECONNRESET' | 'EFULL' | 'ECLOSED' | 'EREMOTE' | 'EMSGSIZE' | 'ABORT_ERR'
  | 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE'
  | 'EADDRINUSE' | 'ENAMETOOLONG' | 'EACCES' | 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM'
  | 'ERR_ZEROWIRE_SINK' | 'ERR_ZEROWIRE_OVERFLOW' | 'ERR_ZEROWIRE_NO_ADDON' | 'ECONNFAILED'
  | 'EAUTH' | 'ERR_ZEROWIRE_INSECURE' | 'ERR_ZEROWIRE_UNSAFE_PATH' | 'ERR_ZEROWIRE_PEER_UID'
  | (string & {})

/**
 * What zerowire throws and rejects with: an `Error` (a `TypeError` for a wrong type, a
 * `RangeError` for a value out of range, an `AbortError` for an aborted request) with a
 * `code`. Tell them apart by `code`: `catch (err) { if ((err as ZerowireError).code === 'ETIMEDOUT') … }`.
 */
export interface ZerowireError extends Error {
  code: ZerowireErrorCode
  /** The OS's error number ('connectError' from the OS). */
  errno?: number
  /** 'connectError': the endpoint that could not be reached. */
  endpoint?: string
  /** 'connectError': when the next attempt starts, in ms. */
  retryInMs?: number
  /** A sink's 'error' (ERR_ZEROWIRE_SINK): its route and database path. */
  route?: string
  path?: string
}

/** 'sinkRecovered': the sink of `route` writes again; every row it held is stored. */
export interface SinkRecovered {
  route: string
  path: string
}

export interface MessagesOptions {
  /**
   * Pushes kept for the loop while it is busy, at most. One more ends the iteration with an
   * error (ERR_ZEROWIRE_OVERFLOW) once those already kept are read. Default 1000.
   */
  highWaterMark?: number
}

export interface ClientOptions {
  /** Default deadline of `request()`, in ms. Default 5000. */
  requestTimeoutMs?: number
  /** Messages queued in Rust (not yet written) before `send()` refuses. Default 100 000. */
  sendHighWaterMark?: number
  /** Bytes queued in Rust before `send()` refuses. Default 64 MiB. */
  sendHighWaterBytes?: number
  /**
   * Larger payloads are a RangeError with code EMSGSIZE. Also caps what is read: a server
   * sending a larger message is disconnected (the request fails with ECONNRESET). Default 16 MiB.
   */
  maxMessageBytes?: number
  /** How long `close()` (and process exit) may spend draining queued messages. Default 1000. */
  lingerMs?: number
  /** First delay between connection attempts, doubling up to the maximum. Default 100. */
  reconnectIntervalMs?: number
  /** Longest delay between connection attempts. Default 5000. */
  reconnectMaxIntervalMs?: number
  /** Announced to the server in the hello; shown in its 'connect' event. At most 1024 bytes. */
  name?: string
  /** How often a zerowire server is pinged. Default 1000; at least 1. */
  heartbeatIntervalMs?: number
  /**
   * Silence after which the connection is dropped and re-made. Default 3 × the interval; at
   * least the interval.
   */
  heartbeatTimeoutMs?: number
  /**
   * What `send()` does when a high-water mark is reached: 'refuse' (return false; default) or
   * 'drop-oldest' (accept, and drop the oldest queued send with reason 'overflow'; refuses only
   * at twice the marks, if the engine thread falls behind).
   */
  whenFull?: 'refuse' | 'drop-oldest'
  /** Replies slower than this (ms, from the call) emit 'slow'. Default 0: off. */
  slowRequestMs?: number
  /**
   * Bytes of received replies and pushes waiting for the JS thread, at most: past it the
   * client stops reading its sockets (servers are pushed back by the kernel, nothing is
   * dropped) until JS has caught up. Default 64 MiB.
   */
  receiveHighWaterBytes?: number
  /**
   * CURVE (tcp:// to a server with `curve`, zerowire or libzmq): everything is encrypted, and
   * nothing is sent to a server that does not hold the secret of `serverPublicKey`. Requests
   * fail with EAUTH when no endpoint completes the handshake.
   */
  curve?: ClientCurveOptions
  /**
   * ipc:// only: the uid the server's process must run as, checked from the kernel
   * (SO_PEERCRED) on each connection before anything is written to it. Default: this
   * process's effective uid, or root. A number: exactly that uid. `false`: no check. A server
   * of another uid is dropped; 'connectError' and its requests fail with
   * ERR_ZEROWIRE_PEER_UID. Not checked where the OS gives no peer credentials (Windows).
   */
  expectServerUid?: number | false
}

/** Z85 keys, 40 characters each (`curveKeypair()`, libzmq's `zmq_curve_keypair`). */
export interface CurveKeypair {
  publicKey: string
  secretKey: string
}

export interface ClientCurveOptions {
  /** The server's long-term public key: the one this client trusts. */
  serverPublicKey: string
  /** This client's long-term key pair; a fresh one for this Client when omitted. */
  publicKey?: string
  secretKey?: string
}

/** A new CURVE key pair from the OS's randomness. */
export declare function curveKeypair(): CurveKeypair

export interface RequestOptions {
  /** Overrides `requestTimeoutMs` for this request (per attempt). */
  timeoutMs?: number
  /** Aborting rejects the request with an AbortError; a reply that still comes is dropped. */
  signal?: AbortSignal
  /**
   * Idempotent requests only: send again up to this many times when an attempt times out or
   * its connection goes down. The first reply settles it; replies to other copies are counted
   * as late. Default 0.
   */
  retries?: number
}

/** Why an accepted send was not delivered. */
export type DropReason = 'overflow' | 'closed' | 'peer-lost'

export interface ClientStats {
  /**
   * `send()` calls (that passed the argument checks). Each ends in exactly one of refused,
   * delivered or dropped: sent = delivered + refused + dropped + inFlight.
   */
  sent: number
  /** `send()` calls refused because a high-water mark was reached (returned false). */
  refused: number
  /**
   * Sends a zerowire server confirmed its handlers ran on (or its SQLite sink wrote). To a
   * plain ZeroMQ peer, which cannot confirm, a send counts as delivered once a later reply or
   * the close barrier proves it was read.
   */
  delivered: number
  /** Accepted sends dropped, all reasons: the sum of the three below. */
  dropped: number
  /** Pushed out by newer sends (whenFull: 'drop-oldest'). */
  droppedOverflow: number
  /** Queued, or written but unconfirmed, when close() ran out of lingerMs. */
  droppedClosed: number
  /**
   * Written to a plain ZeroMQ peer over a connection that died before anything confirmed them
   * (at most once: the peer may have read some). Sends to a zerowire server are replayed
   * instead, so this stays 0 for them.
   */
  droppedPeerLost: number
  /** Accepted sends not yet delivered or dropped. */
  inFlight: number
  /** Requests accepted by `request()`. */
  requests: number
  /** `request()` calls refused (EFULL) because a high-water mark was reached. */
  requestsRefused: number
  /** Messages (sends and requests) waiting in Rust to be written, and their bytes. */
  queued: number
  queuedBytes: number
  /** Messages (sends and requests) handed to a socket. */
  written: number
  /** Requests that timed out or were aborted before they could be written. */
  expiredUnsent: number
  /** Requests sent again (the `retries` option). */
  retries: number
  /**
   * Fire-and-forget messages written again after the connection they went out on was lost
   * before a zerowire server confirmed handling them (they are counted once in `sent`).
   */
  replayed: number
  replies: number
  errorReplies: number
  timeouts: number
  /** Requests rejected with ECONNRESET: their connection went down before the reply. */
  resets: number
  /** Connections dropped because the server fell silent past heartbeatTimeoutMs. */
  heartbeatTimeouts: number
  /** Replies that came after their request timed out or was aborted. */
  lateReplies: number
  /** Messages pushed by the server ('message' events). */
  pushes: number
  /** Inbound messages that fit no known shape (dropped). */
  malformed: number
  connects: number
  disconnects: number
  connectFailures: number
  /** Connection attempts that failed the CURVE handshake (among connectFailures). */
  authFailures: number
  connected: boolean
  /** Requests awaiting their reply. */
  pending: number
  latency: {
    /** request() call → its reply (retries included). */
    request: LatencySummary
    /** Message queued → written to the socket (sends and requests). */
    queueWait: LatencySummary
  }
}

/** A ZeroMQ DEALER whose socket lives on a Rust thread. */
export declare class Client extends EventEmitter {
  /**
   * @param endpoint `ipc:///path/to.sock` or `tcp://host:port`, or several of them: sends go
   *   round-robin over the connected ones and fail over when one goes down. Connects in the
   *   background.
   */
  constructor(endpoint: string | string[], options?: ClientOptions)
  /** The first endpoint. */
  readonly endpoint: string
  readonly endpoints: string[]
  /** Server-assigned id, once a zerowire server acknowledged the connection. */
  readonly clientId: string | undefined
  /** True while connected to a zerowire server that acknowledged this client. */
  readonly isReady: boolean
  /**
   * Queues a fire-and-forget message and returns at once: true if queued, false if refused
   * because a high-water mark is reached (counted in `stats().refused`; `'drain'` is emitted
   * once the queue is down to half its high-water marks). Never waits, never
   * throws because of load or a missing server. A Buffer or Uint8Array is copied during the
   * call (its ArrayBuffer may be detached or shrunk afterwards without harm); only a view of
   * a SharedArrayBuffer, from 16 KiB up, is sent without a copy, so its bytes are read when
   * the engine writes them.
   * @throws TypeError (ERR_INVALID_ARG_TYPE), RangeError (EMSGSIZE), Error (ECLOSED)
   */
  send(raw: Payload): boolean
  /**
   * Sends a request and resolves with the reply body. Rejects with code ETIMEDOUT, ECONNRESET
   * (its connection went down after it was written), EFULL, ECLOSED, EREMOTE (the server answered with an error reply), EMSGSIZE,
   * ERR_INVALID_ARG_TYPE, EAUTH or ERR_ZEROWIRE_PEER_UID (no server passed the CURVE or uid
   * check: not sent), or an AbortError.
   */
  request(raw: Payload, options?: RequestOptions): Promise<string>
  stats(): ClientStats
  /**
   * The server's pushes, in order: `for await (const msg of client.messages())`. Ends when the
   * client closes or the loop breaks; keeps the process alive while open. Bounded by
   * `highWaterMark` (see MessagesOptions).
   */
  messages(options?: MessagesOptions): AsyncIterableIterator<string>
  /** `for await (const msg of client)`: `client.messages()` with its defaults. */
  [Symbol.asyncIterator](): AsyncIterableIterator<string>
  /**
   * Stops accepting messages, drains what is queued for at most `lingerMs`, rejects requests
   * still pending with ECLOSED, and resolves when the background thread has ended.
   */
  close(): Promise<void>
  /** `await using client = new Client(…)`: `close()` when the scope ends. */
  [Symbol.asyncDispose](): Promise<void>

  on(event: 'message', listener: (raw: string) => void): this
  on(event: 'ready', listener: (info: { clientId: string, serverPid: number, endpoint: string }) => void): this
  on(event: 'disconnect', listener: (info: { endpoint: string }) => void): this
  /**
   * A connection attempt failed, and why: the OS's code (ENOENT for an ipc:// path that does
   * not exist), EAUTH when a server refused the CURVE handshake, ERR_ZEROWIRE_PEER_UID when an
   * ipc server runs as a uid `expectServerUid` does not allow (dropped before anything was
   * written), or ETIMEDOUT when nobody accepted in time. The client tries again by itself.
   */
  on(event: 'connectError', listener: (err: ZerowireError) => void): this
  /** Accepted sends were dropped; at most once per second per reason (and once at close). */
  /** A reply took longer than `slowRequestMs`; `request` is what was sent. */
  on(event: 'slow', listener: (info: { ms: number, request: Payload }) => void): this
  on(event: 'drop', listener: (info: { reason: DropReason, count: number }) => void): this
  /**
   * After a `send()` returned false or a `request()` was refused with EFULL: the queue is down
   * to half its high-water marks, so sending can resume. Once per such episode, as a socket's.
   */
  on(event: 'drain', listener: () => void): this
  on(event: 'close', listener: () => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

export interface ServerOptions {
  /** The top-level JSON field messages are routed by. Default 'type'. */
  typeField?: string
  /** How many leading bytes of a message are searched for it. Default 256. */
  sniffBytes?: number
  /** Mode of the ipc:// socket file. Default 0o600 (owner only). */
  socketMode?: number
  /** Replies and pushes queued in Rust before they are refused. Default 100 000. */
  sendHighWaterMark?: number
  /** Bytes queued in Rust before replies and pushes are refused. Default 64 MiB. */
  sendHighWaterBytes?: number
  /**
   * Larger replies and pushes are a RangeError (EMSGSIZE). Also caps what is read: a client
   * sending a larger message is disconnected. Default 16 MiB.
   */
  maxMessageBytes?: number
  /** How long `close()` may spend writing what is queued. Default 1000. */
  lingerMs?: number
  /** A zerowire client silent this long (no ping) is dropped: 'disconnect' with 'timeout'. Default 3000. */
  heartbeatTimeoutMs?: number
  /**
   * How handlers get message bodies: 'utf8' (default) a string, 'buffer' a Buffer with the
   * bytes as received (no decoding on the JS thread; from 16 KiB up not even a copy). Smaller
   * ones are views into one Buffer per batch (≤ 256 KiB), like Node's own Buffer pool:
   * `Buffer.from(raw)` to keep one for long.
   */
  encoding?: 'utf8' | 'buffer'
  /**
   * Requests read and not yet answered, at most: one more is answered at once with an error
   * reply (the client's request rejects with EREMOTE) and never reaches a handler. Default
   * 100 000.
   */
  maxPendingRequests?: number
  /**
   * A request a handler has not answered after this long is forgotten (its client gave up
   * long before); a later `ctx.reply()` is counted as unroutable. Default 60 000.
   */
  pendingRequestTimeoutMs?: number
  /**
   * Bytes of received messages waiting for the JS thread, at most: past it the server stops
   * reading its sockets (clients are pushed back by the kernel, nothing is dropped) until JS
   * has caught up. Default 64 MiB.
   */
  receiveHighWaterBytes?: number
  /**
   * A client whose own queue has refused every reply and push for this long (it does not
   * read) is disconnected and its queue dropped ('disconnect' with reason 'closed'). Default 0:
   * never; such a client only has what does not fit refused (stats().peerRefused).
   */
  dropStuckClientAfterMs?: number
  /**
   * CURVE: every connection encrypted, every client authenticated by its long-term key
   * (`ctx.publicKey`). Plaintext peers are refused. `publicKey`, if given, must be the
   * secret key's public half.
   */
  curve?: CurveKeypair | { secretKey: string, publicKey?: string }
  /**
   * Who may connect (default: anyone who can reach the endpoint). A list of keys needs
   * `curve` and is checked in Rust during the handshake. A function is asked once per
   * connection, before anything from that client reaches a handler (its messages are held
   * until it answers; anything but `true` refuses and disconnects it): under `curve` with
   * the proven key, on ipc:// with the peer's uid and pid (`publicKey` null without `curve`).
   * Without `curve` a function needs an ipc:// endpoint.
   */
  authorize?: string[] | ((publicKey: string | null, info: AuthorizeInfo) => boolean | Promise<boolean>)
  /**
   * Serve tcp:// on an address other hosts can reach (not loopback) without `curve`. Without
   * it such a bind throws ERR_ZEROWIRE_INSECURE.
   */
  insecure?: boolean
}

export interface AuthorizeInfo {
  /** Under CURVE, the key the client proved; null without CURVE. */
  publicKey: string | null
  /** The client's ZeroMQ socket type ('DEALER' for a zerowire Client). */
  socketType: string
  /** On ipc://, the client process's uid and pid, from the kernel (SO_PEERCRED). */
  uid?: number
  pid?: number
}

/** What a handler gets with each message. */
export interface Context {
  readonly clientId: string
  /** Under CURVE, the client's long-term public key (Z85), proven in its handshake. */
  readonly publicKey: string | undefined
  /** On ipc://, the client process's uid, from the kernel (SO_PEERCRED). */
  readonly uid: number | undefined
  /** On ipc://, the client process's pid, from the kernel (SO_PEERCRED). */
  readonly pid: number | undefined
  /** True when the sender awaits a reply (client.request). */
  readonly isRequest: boolean
  /**
   * True when a server (this process before a restart, or another endpoint's) may have
   * handled this message already: the client sent it again after losing the connection it
   * first went out on. A message this process has read before never reaches a handler again;
   * one it cannot rule out comes marked. Always false for requests.
   */
  readonly redelivered: boolean
  /**
   * `"<client session: 16 hex digits>:<seq>"`, the same on every delivery of this message:
   * the key for an idempotent handler. Undefined for requests and for clients that do not
   * number their sends (plain ZeroMQ DEALERs).
   */
  readonly messageId: string | undefined
  /** Answers later; false if already answered or not a request. */
  reply(raw: Payload): boolean
}

/** A reply is a payload, a promise of one, or undefined (answer later with ctx.reply). */
/** `Raw` is `Buffer` on a server created with `encoding: 'buffer'`. */
export type Handler<Raw extends string | Buffer = string> = (raw: Raw, ctx: Context) => Payload | undefined | void | Promise<Payload | undefined | void>

export interface ClientInfo {
  /** On ipc://, from the kernel (SO_PEERCRED); elsewhere as the client's hello announced it. */
  pid?: number
  /** On ipc://, the client process's uid, from the kernel (SO_PEERCRED). */
  uid?: number
  ppid?: number
  name?: string
  /** Under CURVE, the client's long-term public key (Z85). */
  publicKey?: string
}

export interface ServerStats {
  received: number
  routed: number
  unrouted: number
  requests: number
  replies: number
  pushes: number
  /** Replies and pushes whose client was gone. */
  unroutable: number
  malformed: number
  /**
   * Fire-and-forget messages a client sent again that this process had already read: not
   * handed to handlers again (acked once the original is handled).
   */
  duplicates: number
  connects: number
  disconnects: number
  clients: number
  /** Replies and pushes refused because a high-water mark was reached. */
  refused: number
  /**
   * Replies and pushes refused for being larger than `maxMessageBytes`. A handler's reply that
   * is too large becomes an error reply (the client's request rejects with EREMOTE and the
   * reason); `ctx.reply()` throws EMSGSIZE and leaves the request unanswered, to answer again.
   */
  tooLarge: number
  /** Replies and pushes waiting in Rust to be handed to their clients' queues. */
  queued: number
  queuedBytes: number
  /**
   * Replies and pushes refused because their client's own queue was full: a client that does
   * not read only ever loses its own messages. Each client's queue holds at most
   * `sendHighWaterMark` messages and `sendHighWaterBytes` bytes; acks, pongs and hello acks
   * use a small lane of their own and never wait behind data.
   */
  peerRefused: number
  /** Requests waiting for their handler's answer. */
  pendingRequests: number
  /** Requests answered at once with an error because `maxPendingRequests` were waiting. */
  requestsRefused: number
  /** Requests forgotten unanswered after `pendingRequestTimeoutMs`. */
  requestsExpired: number
  /** What the clients' queues hold now, summed over clients. */
  peerQueued: number
  peerQueuedBytes: number
  /** Messages handed to sink routes (route(name).toSqlite), and what the writers did. */
  sunk: number
  sinkRows: number
  sinkBatches: number
  /**
   * Failed attempts to commit a batch (disk full, a lock held past the busy timeout, the file
   * removed, ...). Each is retried with the rows kept: no row is lost by it.
   */
  sinkErrors: number
  /**
   * Rows never stored: only those a sink still could not write 5 s after close() began
   * (never acked to their clients, never answered). 0 otherwise.
   */
  sinkLost: number
  /** Sinks that cannot write right now (the server reads nothing meanwhile). */
  sinkFailing: number
  /** CURVE handshakes completed, and failed (wrong server key, plaintext peers, bad boxes). */
  curveHandshakes: number
  curveFailures: number
  /** CURVE clients refused: by the `authorize` list or function. */
  unauthorized: number
  /** CURVE connections closed for a message that did not decrypt (tampered, replayed). */
  curveRejected: number
  latency: {
    /** Message read by the server thread → taken by JS. */
    queueWait: LatencySummary
    /** Request read → its reply handed to the socket. */
    service: LatencySummary
  }
}

/** Percentiles of a latency histogram kept in Rust, in microseconds (≤ 3% above the truth). */
export interface LatencySummary {
  count: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

/** `server.route(name)` without a handler: a route served by Rust, never waking JS. */
export interface Route {
  readonly server: Server
  readonly name: string
  /**
   * Stores every message of this type in the SQLite database at `path` (table `logs` by
   * default: id, received_at ms, client_id, raw — the bytes as received: TEXT when valid UTF-8,
   * else a BLOB), batched in transactions on a Rust thread.
   * A send is acked to its client, and a request of this type answered with an empty reply,
   * only once its row is committed. A failed commit is retried with a backoff, its rows
   * kept, while the server reads nothing: 'error' (ERR_ZEROWIRE_SINK) once per episode,
   * 'sinkRecovered' at its end. A database file removed while open is reported the same way
   * and a new one is created at the path. Opens the file now: a bad path, or a file or
   * directory that cannot be written, throws (ERR_ZEROWIRE_SINK). close() writes every row
   * read before it.
   */
  toSqlite(path: string, options?: { table?: string }): Server
}

/** A ZeroMQ ROUTER whose socket lives on a Rust thread; routing happens there too. */
export declare class Server extends EventEmitter {
  /**
   * Binds now: EADDRINUSE (a live server, or a path that is not a socket), ENAMETOOLONG
   * (ipc path over the OS limit: 107 bytes on Linux, 103 on macOS) or a bad option throws here. A stale socket file is replaced.
   */
  constructor(endpoint: string, options?: ServerOptions)
  /** The bound endpoint, with the real port for tcp://host:0. */
  readonly endpoint: string
  /** Messages whose type field equals `name` go to `handler`. */
  route<Raw extends string | Buffer = string>(name: string, handler: Handler<Raw>): this
  /** The route itself, to serve it from Rust: `server.route('log').toSqlite('log.db')`. */
  route(name: string): Route
  /** Pushes to one client; false if it is unknown or the queue is full. */
  sendTo(clientId: string, raw: Payload): boolean
  /** Pushes to every connected client; returns how many. */
  broadcast(raw: Payload): number
  clients(): string[]
  stats(): ServerStats
  close(): Promise<void>
  /** `await using server = new Server(…)`: `close()` when the scope ends. */
  [Symbol.asyncDispose](): Promise<void>

  on<Raw extends string | Buffer = string>(event: 'message', listener: (raw: Raw, ctx: Context) => void): this
  on(event: 'connect', listener: (clientId: string, info: ClientInfo) => void): this
  on(event: 'disconnect', listener: (clientId: string, reason: 'goodbye' | 'closed' | 'timeout') => void): this
  /**
   * A fire-and-forget handler threw (with its `ctx`), or a sink cannot write (a ZerowireError
   * with code ERR_ZEROWIRE_SINK, `route` and `path`, and no `ctx`). Without a listener these
   * become process warnings instead.
   */
  on(event: 'error', listener: (err: Error | ZerowireError, ctx: Context | undefined) => void): this
  /** A sink that could not write writes again (after its 'error'). */
  on(event: 'sinkRecovered', listener: (info: SinkRecovered) => void): this
  /** After a refused reply, `sendTo()` or `broadcast()`: the queue is down to half its marks. */
  on(event: 'drain', listener: () => void): this
  on(event: 'close', listener: () => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}
