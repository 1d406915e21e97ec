'use strict'
// A stand-in service for the demo: a plain zeromq.js ROUTER speaking zerowire's two-frame
// envelope (docs/PROTOCOL.md). It counts fire-and-forget messages and answers requests.
// Usage: node examples/echo-service.js ipc:///tmp/demo.sock

const zmq = require('zeromq')

async function main (endpoint) {
  const router = new zmq.Router()
  await router.bind(endpoint)
  process.send?.('ready')
  let logged = 0
  for await (const [identity, corr, body] of router) {
    if (corr.length === 0) {
      logged++
      continue
    }
    const text = body.toString()
    const reply = text.includes('"time_request"')
      ? JSON.stringify({ now: Date.now(), logged })
      : text
    await router.send([identity, corr, reply])
  }
}

main(process.argv[2]).catch((err) => {
  console.error(err)
  process.exit(1)
})
