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

  // The body as text, whatever its content type: it is forwarded, never parsed.
  app.post('/log', express.text({ type: () => true, limit: '1mb' }), (req, res) => {
    const raw = typeof req.body === 'string' ? req.body : ''
    if (raw === '') return res.status(400).send('empty body\n')
    // send() only queues (in Rust): answer at once. false = the queue is at its high-water mark.
    res.status(client.send(raw) ? 202 : 503).end()
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
