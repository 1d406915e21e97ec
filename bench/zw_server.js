'use strict'
// The zerowire side of the "Node → Node" benchmark, in its own process: a zerowire Server used
// the way an application would. Bench bodies carry no "type" field, so every message reaches
// the 'message' event: fire-and-forget ones are counted, requests are echoed with ctx.reply().
// With `buffer` the bodies arrive as Buffers (encoding: 'buffer'), as zeromq.js's Router hands
// them to server.js: neither side decodes. With `utf8` they arrive as strings (the default),
// decoded on this process's main thread; bench bodies are ASCII, so a string's length is its
// byte count, and run.js checks the byte totals.
// Counts go to run.js over the fork() IPC channel (counter.js), as with server.js.
// BENCH_CURVE_SECRET (a Z85 secret key) makes it a CURVE server; its bound endpoint goes to
// run.js with 'ready' (for tcp://127.0.0.1:0).
// Usage (forked by run.js): node bench/zw_server.js <endpoint> <buffer|utf8>

const { Server } = require('..')
const { startCounter } = require('./counter')

const counter = startCounter()
const secretKey = process.env.BENCH_CURVE_SECRET
const server = new Server(process.argv[2], { encoding: process.argv[3] || 'utf8', ...(secretKey ? { curve: { secretKey } } : {}) })
server.on('message', (raw, ctx) => {
  if (ctx.isRequest) ctx.reply(raw)
  else counter.add(raw.length)
})
// A handler error or a refused reply would show up as a stalled or failed figure; say why.
server.on('error', (err) => console.error('bench zw_server:', err))
counter.ready(server.endpoint)
