'use strict'
// A zerowire Server that appends every message it handles to a file, synchronously, before
// its handler returns. The file survives a SIGKILL, so the test can compare exactly what each
// server incarnation handled with what the client counted as delivered (the server acks only
// what its handlers have run on). Each line: the body, R if the message came marked
// redelivered (else -), and its messageId.
// Requests are answered `ok:<body>`, after [replyDelayMs] if given ('-' for none); each
// handler busies the JS thread for [handleUs] µs if given (a slow consumer, so that handling
// lags behind reading).
// Usage: node counting_server.js <endpoint> <file> [replyDelayMs|-] [handleUs]
const fs = require('node:fs')
const { Server } = require('../..')

const [endpoint, file, delayArg, handleArg] = process.argv.slice(2)
const delay = delayArg === '-' ? undefined : delayArg
const handleNs = BigInt(Math.round(Number(handleArg || 0) * 1000))
const fd = fs.openSync(file, 'a')
const server = new Server(endpoint)
let first = true
server.on('message', (raw, ctx) => {
  if (first) {
    first = false
    fs.writeSync(fd, `first ${Date.now()}\n`)
  }
  fs.writeSync(fd, `${raw} ${ctx.redelivered ? 'R' : '-'} ${ctx.messageId}\n`)
  if (handleNs > 0n) {
    const until = process.hrtime.bigint() + handleNs
    while (process.hrtime.bigint() < until);
  }
  if (!ctx.isRequest) return
  if (delay === undefined) ctx.reply(`ok:${raw}`)
  else setTimeout(() => ctx.reply(`ok:${raw}`), Number(delay))
})
fs.writeSync(fd, `bound ${Date.now()}\n`)
process.stdout.write('ready\n')
// Ends with its parent: stdin closes when the test process goes away.
process.stdin.on('end', () => server.close().then(() => process.exit(0)))
process.stdin.resume()
