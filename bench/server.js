'use strict'
// The ZeroMQ side of the benchmark, in its own process: a zeromq.js ROUTER that counts
// fire-and-forget messages (empty corr frame) and echoes requests [id, corr, body] unchanged.
// BENCH_CURVE_SECRET (a Z85 secret key) makes it a CURVE server (zeromq.js's curveServer);
// its bound endpoint goes to run.js with 'ready' (for tcp://127.0.0.1:*).
// Usage (forked by run.js): node bench/server.js <endpoint>

const zmq = require('zeromq')
const { startCounter } = require('./counter')

async function main () {
  const counter = startCounter()
  const secretKey = process.env.BENCH_CURVE_SECRET
  const router = new zmq.Router({ linger: 0, ...(secretKey ? { curveServer: true, curveSecretKey: secretKey } : {}) })
  await router.bind(process.argv[2])
  counter.ready(router.lastEndpoint)
  for await (const [id, corr, body] of router) {
    if (corr.length === 0) counter.add(body.length)
    else await router.send([id, corr, body])
  }
}

main().catch((err) => {
  console.error('bench server:', err)
  process.exit(1)
})
