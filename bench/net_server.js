'use strict'
// The raw baseline server, in its own process: Node `net` on a Unix socket with the frames
// of framing.js. Counts KIND_COUNT frames and writes KIND_ECHO frames back as they came.
// Usage (forked by run.js): node bench/net_server.js <socket path>

const net = require('node:net')
const { startCounter } = require('./counter')
const { FrameReader, KIND_COUNT } = require('./framing')

const counter = startCounter()
const server = net.createServer((sock) => {
  const reader = new FrameReader((kind, body, frame) => {
    if (kind === KIND_COUNT) counter.add(body.length)
    else sock.write(frame)
  })
  sock.on('data', (chunk) => reader.push(chunk))
  sock.on('error', () => sock.destroy())
})
server.listen(process.argv[2], () => counter.ready())
