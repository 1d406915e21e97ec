'use strict'
// Shared by the two bench servers: counts fire-and-forget bodies and tells the parent, over
// the fork() IPC channel, when a count it is waiting for has been reached, or what the counts
// are once no message has arrived for a while (so the parent can see messages delivered more
// often than sent). Reporting out of band keeps the measured sockets carrying only benchmark
// traffic.

function startCounter () {
  let count = 0
  let bytes = 0
  let waitingFor = 0

  function check () {
    if (waitingFor !== 0 && count >= waitingFor) {
      waitingFor = 0
      process.send({ count, bytes })
    }
  }

  function reportWhenQuiet (quietMs, lastCount) {
    setTimeout(() => {
      if (count === lastCount) process.send({ count, bytes })
      else reportWhenQuiet(quietMs, count)
    }, quietMs)
  }

  process.on('message', (msg) => {
    if (typeof msg.waitFor === 'number') {
      waitingFor = msg.waitFor
      check()
    } else if (typeof msg.quietMs === 'number') {
      reportWhenQuiet(msg.quietMs, count)
    }
  })
  // The IPC channel closes when the parent goes away, even if it was killed: never outlive it.
  process.on('disconnect', () => process.exit(0))

  return {
    add (bodyBytes) {
      count++
      bytes += bodyBytes
      if (count === waitingFor) check()
    },
    /** `endpoint`: where the server is bound, when the parent could not choose it (tcp …:0). */
    ready (endpoint) {
      process.send(endpoint === undefined ? { ready: true } : { ready: true, endpoint })
    },
  }
}

module.exports = { startCounter }
