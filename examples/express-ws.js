// zerowire in an Express + ws app. The service is usually another process (zerowire, pyzmq,
// libzmq); it is in this one here so that the file runs as it is. Run: node express-ws.js
const express = require('express')
const { WebSocketServer } = require('ws')
const { Client, Server } = require('zerowire')

const endpoint = process.env.ZW_ENDPOINT || 'tcp://127.0.0.1:5555'
const service = new Server(endpoint)
service.route('time', () => JSON.stringify({ now: new Date().toISOString() }))
service.on('message', (raw) => console.log('service got', raw)) // every other type

const client = new Client(service.endpoint)
const app = express()
app.post('/events', express.text({ type: '*/*' }), (req, res) => {
  res.status(client.send(req.body) ? 202 : 503).end() // queued in Rust; never blocks
})
app.get('/time', async (req, res) => res.type('json').send(await client.request('{"type":"time"}')))
const server = app.listen(Number(process.env.PORT || 3000), () => console.log('listening on', server.address().port))
new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (data) => client.send(data)))
