'use strict'
// A TCP relay that delays every chunk by a fixed time in each direction: the latency half of
// netem for kernels without it (__test__/netns.test.js). It forwards each accepted connection
// to the upstream address and mirrors closes both ways (a refused upstream closes the
// downstream at once), so a dead server looks dead to the client, as without the relay.
// Prints "listening"; exits when stdin closes.
// Usage: node relay.js <listenHost> <listenPort> <upstreamHost> <upstreamPort> <delayMs>

const net = require('node:net')

const [host, port, upHost, upPort, delayArg] = process.argv.slice(2)
const delay = Number(delayArg)

function pipeDelayed (from, to) {
  // Equal delays keep the order: Node runs timers of the same duration in creation order.
  from.on('data', (chunk) => setTimeout(() => { if (!to.destroyed) to.write(chunk) }, delay))
  from.on('end', () => setTimeout(() => { if (!to.destroyed) to.end() }, delay))
  // An abort (RST, a killed peer) becomes an abort; a clean end was passed on as an end.
  from.on('close', () => setTimeout(() => { if (!to.writableEnded) to.destroy() }, delay))
  from.on('error', () => {})
}

const server = net.createServer((down) => {
  down.setNoDelay(true)
  down.pause()
  const up = net.connect(Number(upPort), upHost)
  up.setNoDelay(true)
  up.on('error', () => down.destroy())
  up.once('connect', () => {
    pipeDelayed(down, up)
    pipeDelayed(up, down)
    down.resume()
  })
  down.on('error', () => up.destroy())
  down.on('close', () => { if (up.connecting) up.destroy() })
})
server.listen(Number(port), host, () => console.log('listening'))
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
