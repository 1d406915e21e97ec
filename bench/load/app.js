'use strict'
// The demo app (examples/app/app.js) for the load run: `node bench/load/app.js zerowire|zeromq
// <endpoint>`, forked by run.js. Reports its event-loop delay over the IPC channel, measured
// only while the load runs ('reset' at its start, 'read' at its end).

const { monitorEventLoopDelay } = require('node:perf_hooks')
const { createApp } = require('../../examples/app/app')

const [variant, endpoint] = process.argv.slice(2)
let client
if (variant === 'zerowire') {
  const { Client } = require('../..')
  client = new Client(endpoint, { name: 'load-app', requestTimeoutMs: 2000 })
} else if (variant === 'zeromq') {
  const { ZeromqClient } = require('./zeromq-client')
  client = new ZeromqClient(endpoint)
} else {
  throw new Error(`unknown variant ${variant}`)
}

const RESOLUTION_MS = 1
const eld = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
eld.enable()
const { server, close } = createApp(client)
server.listen(0, '127.0.0.1', () => process.send({ ready: `http://127.0.0.1:${server.address().port}` }))

process.on('message', async (msg) => {
  if (msg === 'reset') {
    eld.reset()
    process.send({ reset: true })
  } else if (msg === 'read') {
    // The monitor times a RESOLUTION_MS interval: what exceeds it is the delay, in ms.
    const ms = (ns) => Math.max(0, ns / 1e6 - RESOLUTION_MS)
    process.send({
      eventLoopDelayMs: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) },
      client: client.stats(),
      rssMb: Math.round(process.memoryUsage().rss / 2 ** 20),
    })
  } else if (msg === 'stop') {
    await close()
    await client.close()
    process.send({ stopped: client.stats() })
    process.exit(0)
  }
})
