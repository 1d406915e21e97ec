'use strict'
// The demo app's client surface (send / request / stats / 'message' / close) over a zeromq.js 6
// Dealer, speaking zerowire's envelope (docs/PROTOCOL.md: [corr, body], corr 0x01 + u32 LE id
// for a request, empty for fire-and-forget), so the same app runs against the same service.
//
// zeromq.js allows one send in flight per socket (another one throws EBUSY), so the correct
// use is a JS queue and one loop awaiting each send in turn — what this does.

const { EventEmitter } = require('node:events')
const zmq = require('zeromq')

const EMPTY = Buffer.alloc(0)

class ZeromqClient extends EventEmitter {
  constructor (endpoint, { requestTimeoutMs = 2000 } = {}) {
    super()
    this.dealer = new zmq.Dealer({ sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000, linger: 1000 })
    this.dealer.connect(endpoint)
    this.requestTimeoutMs = requestTimeoutMs
    this.queue = []
    this.pumping = null
    this.pending = new Map()
    this.nextId = 1
    this.counters = { sent: 0, requests: 0, written: 0, replies: 0, timeouts: 0, pushes: 0 }
    this.receiving = this._receive()
  }

  send (raw) {
    this.counters.sent++
    this._enqueue([EMPTY, raw])
    return true
  }

  request (raw) {
    const id = this.nextId
    this.nextId = id === 0xffffffff ? 1 : id + 1
    const corr = Buffer.alloc(5)
    corr[0] = 1
    corr.writeUInt32LE(id, 1)
    this.counters.requests++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        this.counters.timeouts++
        reject(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' }))
      }, this.requestTimeoutMs)
      this.pending.set(id, { resolve, timer })
      this._enqueue([corr, raw])
    })
  }

  stats () {
    return { ...this.counters, queued: this.queue.length, pending: this.pending.size }
  }

  _enqueue (frames) {
    this.queue.push(frames)
    if (!this.pumping) this.pumping = this._pump()
  }

  async _pump () {
    while (this.queue.length > 0) {
      await this.dealer.send(this.queue.shift())
      this.counters.written++
    }
    this.pumping = null
  }

  async _receive () {
    try {
      for await (const [corr, body] of this.dealer) {
        if (corr.length === 0) {
          this.counters.pushes++
          this.emit('message', body.toString())
        } else if (corr.length === 5 && corr[0] === 1) {
          const entry = this.pending.get(corr.readUInt32LE(1))
          if (entry === undefined) continue
          this.pending.delete(corr.readUInt32LE(1))
          clearTimeout(entry.timer)
          this.counters.replies++
          entry.resolve(body.toString())
        }
      }
    } catch (err) {
      if (!this.dealer.closed) throw err
    }
  }

  /** Sends what is queued, then closes (the socket's linger bounds the rest). */
  async close () {
    while (this.pumping) await this.pumping
    this.dealer.close()
    await this.receiving
  }
}

module.exports = { ZeromqClient }
