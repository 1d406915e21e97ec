// Type definitions for zerowire. index.js is a thin class over the native addon; these types
// describe that class. __test__/types.test.js checks that every declared member exists.

import { EventEmitter } from 'node:events'

/** Anything `send()` and `request()` accept as a message body. Strings are sent as UTF-8. */
export type Payload = string | Buffer | Uint8Array

export interface ClientOptions {
  /** Default deadline of `request()`, in ms. Default 5000. */
  requestTimeoutMs?: number
  /** Messages queued in Rust (not yet written) before `send()` refuses. Default 100 000. */
  sendHighWaterMark?: number
  /** Bytes queued in Rust before `send()` refuses. Default 64 MiB. */
  sendHighWaterBytes?: number
  /** Larger payloads are a RangeError with code EMSGSIZE. Default 16 MiB. */
  maxMessageBytes?: number
  /** How long `close()` (and process exit) may spend draining queued messages. Default 1000. */
  lingerMs?: number
  /** First delay between connection attempts, doubling up to the maximum. Default 100. */
  reconnectIntervalMs?: number
  /** Longest delay between connection attempts. Default 5000. */
  reconnectMaxIntervalMs?: number
  /** Announced to the server in the hello; shown in its 'connect' event. */
  name?: string
  /** How often a zerowire server is pinged. Default 1000. */
  heartbeatIntervalMs?: number
  /** Silence after which the connection is dropped and re-made. Default 3 × the interval. */
  heartbeatTimeoutMs?: number
}

export interface RequestOptions {
  /** Overrides `requestTimeoutMs` for this request. */
  timeoutMs?: number
  /** Aborting rejects the request with an AbortError; a reply that still comes is dropped. */
  signal?: AbortSignal
}

export interface ClientStats {
  /** Messages accepted by `send()`. */
  sent: number
  /** Requests accepted by `request()`. */
  requests: number
  /** Calls refused because a high-water mark was reached. */
  refused: number
  /** Messages waiting in Rust to be written, and their bytes. */
  queued: number
  queuedBytes: number
  /** Messages handed to the socket. */
  written: number
  /** Written messages known to have gone down with their connection. */
  lost: number
  /** Messages dropped unsent: close() ran out of lingerMs, or the request expired first. */
  dropped: number
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
  connected: boolean
  /** Requests awaiting their reply. */
  pending: number
}

/** A ZeroMQ DEALER whose socket lives on a Rust thread. */
export declare class Client extends EventEmitter {
  /** @param endpoint `ipc:///path/to.sock` or `tcp://host:port`. Connects in the background. */
  constructor(endpoint: string, options?: ClientOptions)
  readonly endpoint: string
  /** Server-assigned id, once a zerowire server acknowledged the connection. */
  readonly clientId: string | undefined
  /** True while connected to a zerowire server that acknowledged this client. */
  readonly isReady: boolean
  /**
   * Queues a fire-and-forget message and returns at once: true if queued, false if refused
   * because a high-water mark is reached (counted in `stats().refused`). Never waits, never
   * throws because of load or a missing server. A Buffer of 16 KiB or more is sent without a
   * copy: do not modify it afterwards.
   * @throws TypeError (ERR_INVALID_ARG_TYPE), RangeError (EMSGSIZE), Error (ECLOSED)
   */
  send(raw: Payload): boolean
  /**
   * Sends a request and resolves with the reply body. Rejects with code ETIMEDOUT, ECONNRESET
   * (its connection went down after it was written), EFULL, ECLOSED, EREMOTE (the server answered with an error reply), EMSGSIZE,
   * ERR_INVALID_ARG_TYPE, or an AbortError.
   */
  request(raw: Payload, options?: RequestOptions): Promise<string>
  stats(): ClientStats
  /**
   * Stops accepting messages, drains what is queued for at most `lingerMs`, rejects requests
   * still pending with ECLOSED, and resolves when the background thread has ended.
   */
  close(): Promise<void>

  on(event: 'message', listener: (raw: string) => void): this
  on(event: 'ready', listener: (info: { clientId: string, serverPid: number }) => void): this
  on(event: 'disconnect', listener: () => void): this
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
  /** Larger replies and pushes are a RangeError (EMSGSIZE). Default 16 MiB. */
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
}

/** What a handler gets with each message. */
export interface Context {
  readonly clientId: string
  /** True when the sender awaits a reply (client.request). */
  readonly isRequest: boolean
  /** Answers later; false if already answered or not a request. */
  reply(raw: Payload): boolean
}

/** A reply is a payload, a promise of one, or undefined (answer later with ctx.reply). */
/** `Raw` is `Buffer` on a server created with `encoding: 'buffer'`. */
export type Handler<Raw extends string | Buffer = string> = (raw: Raw, ctx: Context) => Payload | undefined | void | Promise<Payload | undefined | void>

export interface ClientInfo {
  pid?: number
  ppid?: number
  name?: string
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
  connects: number
  disconnects: number
  clients: number
  refused: number
  queued: number
  queuedBytes: number
}

/** A ZeroMQ ROUTER whose socket lives on a Rust thread; routing happens there too. */
export declare class Server extends EventEmitter {
  /**
   * Binds now: EADDRINUSE (a live server, or a path that is not a socket), ENAMETOOLONG
   * (ipc path over 107 bytes) or a bad option throws here. A stale socket file is replaced.
   */
  constructor(endpoint: string, options?: ServerOptions)
  /** The bound endpoint, with the real port for tcp://host:0. */
  readonly endpoint: string
  /** Messages whose type field equals `name` go to `handler`. */
  route<Raw extends string | Buffer = string>(name: string, handler: Handler<Raw>): this
  /** Pushes to one client; false if it is unknown or the queue is full. */
  sendTo(clientId: string, raw: Payload): boolean
  /** Pushes to every connected client; returns how many. */
  broadcast(raw: Payload): number
  clients(): string[]
  stats(): ServerStats
  close(): Promise<void>

  on<Raw extends string | Buffer = string>(event: 'message', listener: (raw: Raw, ctx: Context) => void): this
  on(event: 'connect', listener: (clientId: string, info: ClientInfo) => void): this
  on(event: 'disconnect', listener: (clientId: string, reason: 'goodbye' | 'closed' | 'timeout') => void): this
  on(event: 'error', listener: (err: Error, ctx: Context) => void): this
  on(event: 'close', listener: () => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}
