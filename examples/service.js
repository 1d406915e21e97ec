// A service: a zerowire Server that routes raw JSON by its "type" field, in Rust.
// Run: node examples/service.js ipc:///tmp/zerowire-demo.sock
const { Server } = require('zerowire')

const server = new Server(process.argv[2])
let logged = 0

server.route('log', () => { logged++ }) // fire-and-forget: nothing to return
server.route('time_request', () => JSON.stringify({ now: Date.now(), logged })) // the reply
server.on('connect', (clientId, info) => console.log(`client ${clientId} connected (pid ${info.pid})`))
server.on('disconnect', (clientId, reason) => console.log(`client ${clientId} left (${reason})`))

process.send?.('ready') // tells examples/demo.js it is listening
process.on('SIGTERM', () => server.close().then(() => process.exit(0)))
