'use strict'
// The web app: Express 5 + ws in front of a service reached through `client` (a zerowire
// Client, or anything with the same send / request / stats / 'message' surface — the load
// bench plugs a zeromq.js Dealer in here). Bodies and frames are passed on as the raw strings
// and buffers they arrived as: no JSON.parse or JSON.stringify on the request paths.

const http = require('node:http')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const express = require('express')
const { WebSocketServer, WebSocket } = require('ws')
const { toPrometheus } = require('./metrics')

const RESOLUTION_MS = 10
// A body whose first key is "type" (JSON whitespace only around it), and one whose value is "log".
const TYPE_FIRST = /^[ \t\n\r]*\{[ \t\n\r]*"type"[ \t\n\r]*:[ \t\n\r]*"([^"\\]*)"/
const LOG_FIRST = /^[ \t\n\r]*\{[ \t\n\r]*"type"[ \t\n\r]*:[ \t\n\r]*"log"/

function createApp (client) {
  const app = express()
  const server = http.createServer(app)
  const wss = new WebSocketServer({ server, path: '/ws' })
  const eventLoop = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  eventLoop.enable()
  let lastStats = null // the service's latest `stats` push, raw

  client.on('message', (raw) => {
    // Only the service's periodic push arrives unasked; keep it as the string it came as.
    if (raw.startsWith('{"type":"stats"')) lastStats = raw
  })

  // The body as text, whatever its content type: it is forwarded, never parsed. The service
  // stores what its router sends to `log` and nothing else, so a 202 must not be given for a
  // body it would drop.
  app.post('/log', express.text({ type: () => true, limit: '1mb' }), async (req, res) => {
    const raw = typeof req.body === 'string' ? req.body : ''
    if (raw === '') return res.status(400).send('empty body\n')
    // "type":"log" as the first key is a log for the service's router too (docs/PROTOCOL.md,
    // Routing): send() only queues (in Rust), so answer at once; false = the queue is full.
    if (LOG_FIRST.test(raw)) return res.status(client.send(raw) ? 202 : 503).end()
    const first = TYPE_FIRST.exec(raw)
    if (first) return res.status(422).send(`not a log: "type" is "${first[1]}"; POST /log takes {"type":"log",…}\n`)
    // "type" further on, or none: the service's router decides, so ask it (one round trip).
    // Its SQLite route answers a request with '' once the row is queued.
    try {
      const reply = await client.request(raw)
      if (reply === '') return res.status(202).end()
      res.status(422).send('not a log: the service routes this body elsewhere\n')
    } catch (err) {
      // EREMOTE: the service has no route for it ("no route for this message").
      if (err.code === 'EREMOTE') return res.status(422).send(`not a log: ${err.message}; POST /log takes {"type":"log",…}\n`)
      res.status(err.code === 'ETIMEDOUT' ? 504 : err.code === 'EFULL' ? 503 : 502).send(`${err.code || err.message}\n`)
    }
  })

  app.get('/time', async (req, res) => {
    try {
      res.type('json').send(await client.request('{"type":"time_request"}'))
    } catch (err) {
      res.status(err.code === 'ETIMEDOUT' ? 504 : 502).send(`${err.code || err.message}\n`)
    }
  })

  app.get('/stats', (req, res) => {
    if (lastStats === null) return res.status(503).send('no stats from the service yet\n')
    res.type('json').send(lastStats)
  })

  app.get('/metrics', (req, res) => {
    // The monitor times a RESOLUTION_MS interval: what exceeds it is the delay.
    const us = (ns) => Math.max(0, Math.round(ns / 1000) - RESOLUTION_MS * 1000)
    const loop = {
      delay: {
        count: eventLoop.count,
        p50: us(eventLoop.percentile(50)),
        p90: us(eventLoop.percentile(90)),
        p99: us(eventLoop.percentile(99)),
        p999: us(eventLoop.percentile(99.9)),
        max: us(eventLoop.max),
      },
    }
    const sections = {
      app_event_loop: loop,
      app_websockets: { connected: wss.clients.size },
      zerowire_client: client.stats(),
      // Parsed here only: a scrape every few seconds, not the request path.
      zerowire_server: lastStats && JSON.parse(lastStats).server,
    }
    // res.end, not res.send: Express would rewrite the content type Prometheus looks for.
    res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
    res.end(toPrometheus(sections))
  })

  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      client.send(data)
      for (const peer of wss.clients) {
        if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary })
      }
    })
  })

  /** Stops accepting, closes the browsers' sockets, then the HTTP server. */
  function close () {
    eventLoop.disable()
    for (const ws of wss.clients) ws.close(1001, 'server shutting down')
    wss.close()
    server.closeAllConnections()
    return new Promise((resolve) => server.close(() => resolve()))
  }

  return { app, server, close }
}

module.exports = { createApp }
