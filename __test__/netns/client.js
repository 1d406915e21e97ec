'use strict'
// A zerowire Client driven over JSON lines (__test__/netns.test.js), run in its own process —
// inside a network namespace for tcp://. stdin: {op:'send',n,pad} | {op:'request',id,body,
// timeoutMs} | {op:'stats'} | {op:'close'}. stdout: {ev:'ready'|'disconnect'|'sent'|'settled'|
// 'stats'|'closed', ...}. Exits when stdin closes.
// Usage: node client.js <endpoint> <options as JSON>

const readline = require('node:readline')
const path = require('node:path')
const { Client } = require(path.join(__dirname, '..', '..'))

const [endpoint, optionsJson] = process.argv.slice(2)
const client = new Client(endpoint, JSON.parse(optionsJson || '{}'))
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

client.on('ready', ({ serverPid }) => out({ ev: 'ready', serverPid }))
client.on('disconnect', () => out({ ev: 'disconnect' }))

let seq = 0
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  if (cmd.op === 'send') {
    let accepted = 0
    const pad = 'x'.repeat(cmd.pad || 0)
    for (let i = 0; i < cmd.n; i++) {
      if (client.send(`{"type":"log","seq":${seq++},"pad":"${pad}"}`)) accepted++
    }
    out({ ev: 'sent', accepted })
  } else if (cmd.op === 'request') {
    const options = cmd.timeoutMs ? { timeoutMs: cmd.timeoutMs } : undefined
    client.request(cmd.body, options).then(
      (reply) => out({ ev: 'settled', id: cmd.id, ok: true, reply }),
      (err) => out({ ev: 'settled', id: cmd.id, ok: false, code: err.code }),
    )
  } else if (cmd.op === 'stats') {
    out({ ev: 'stats', stats: client.stats() })
  } else if (cmd.op === 'close') {
    client.close().then(() => out({ ev: 'closed', stats: client.stats() }))
  }
})
rl.on('close', () => process.exit(0))
