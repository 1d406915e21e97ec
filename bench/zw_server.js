'use strict'
// The zerowire side of the "Node → Node" benchmark, in its own process: a zerowire Server used
// the way an application would. Bench bodies carry no "type" field, so every message reaches
// the 'message' event: fire-and-forget ones are counted, requests are echoed with ctx.reply().
// The body arrives as a string (zerowire decodes UTF-8 before JS sees it); bench bodies are
// ASCII, so its length is its byte count, and run.js checks the byte totals.
// Counts go to run.js over the fork() IPC channel (counter.js), as with server.js.
// Usage (forked by run.js): node bench/zw_server.js <endpoint>

const { Server } = require('..')
const { startCounter } = require('./counter')

const counter = startCounter()
const server = new Server(process.argv[2])
server.on('message', (raw, ctx) => {
  if (ctx.isRequest) ctx.reply(raw)
  else counter.add(raw.length)
})
// A handler error or a refused reply would show up as a stalled or failed figure; say why.
server.on('error', (err) => console.error('bench zw_server:', err))
counter.ready()
