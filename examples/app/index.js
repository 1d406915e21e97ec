'use strict'
// The app process: `node examples/app` (npm run demo starts it). Env: PORT (default 3000; 0
// picks a free one), ZW_ENDPOINT (the service's endpoint).

const { Client } = require('zerowire')
const { createApp } = require('./app')

const endpoint = process.env.ZW_ENDPOINT
if (!endpoint) {
  console.error('app: ZW_ENDPOINT must name the service\'s endpoint (npm run demo sets it)')
  process.exit(1)
}
const client = new Client(endpoint, { name: 'demo-app', requestTimeoutMs: 2000 })
const { server, close } = createApp(client)

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST || '127.0.0.1', () => {
  const { address, port } = server.address()
  const url = `http://${address}:${port}`
  console.log(`app: listening on ${url}, service at ${endpoint}`)
  process.send?.({ ready: url })
})

let stopping = false
async function stop (signal) {
  if (stopping) return
  stopping = true
  await close()
  await client.close() // what the routes already queued still reaches the service
  console.log(`app: stopped (${signal})`)
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
