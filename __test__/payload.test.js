'use strict'
// What `ws` hands a 'message' listener (WebSocket.RawData: a Buffer, an ArrayBuffer, or a
// message's fragments as Buffer[]) goes to send(), request(), ctx.reply(), sendTo() and
// broadcast() as it is: an ArrayBuffer as its bytes, fragments as one message, in order.

const test = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const WebSocket = require('ws')
const { Client, Server } = require('..')
const { testProtos, bindAddress, waitFor } = require('./helpers')

function arrayBuffer (s) {
  const b = Buffer.from(s)
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length)
}

function fragments (s, ...cuts) {
  const b = Buffer.from(s)
  const parts = []
  let at = 0
  for (const cut of [...cuts, b.length]) {
    parts.push(Buffer.from(b.subarray(at, cut)))
    at = cut
  }
  return parts
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] ArrayBuffers and fragment arrays are sent as their bytes, one message each, both ways`, async () => {
    const server = new Server(bindAddress(proto), { encoding: 'buffer' })
    const got = []
    server.route('t', (raw, ctx) => {
      if (!ctx.isRequest) return void got.push(Buffer.from(raw).toString())
      if (raw.includes('"late"')) return void ctx.reply(arrayBuffer('late:' + raw))
      return [Buffer.from('re'), Buffer.from('ply:'), Buffer.from(raw)]
    })
    const client = new Client(server.endpoint)
    const pushes = []
    client.on('message', (raw) => pushes.push(raw))
    try {
      assert.equal(client.send(arrayBuffer('{"type":"t","n":1,"é":"ü"}')), true)
      assert.equal(client.send(fragments('{"type":"t","n":2}', 4, 11)), true)
      assert.equal(client.send([Buffer.from('{"type":"t","n":3}')]), true)
      const shared = new Uint8Array(new SharedArrayBuffer(20_000)).fill(0x20)
      shared.set(Buffer.from('{"type":"t","n":4}'))
      assert.equal(client.send(shared.buffer), true)
      await waitFor(() => got.length === 4)
      assert.deepEqual(got.slice(0, 3), ['{"type":"t","n":1,"é":"ü"}', '{"type":"t","n":2}', '{"type":"t","n":3}'])
      assert.equal(got[3], '{"type":"t","n":4}' + ' '.repeat(20_000 - 18))

      assert.equal(await client.request(fragments('{"type":"t","r":1}', 1, 9)), 'reply:{"type":"t","r":1}')
      assert.equal(await client.request(arrayBuffer('{"type":"t","r":2}')), 'reply:{"type":"t","r":2}')
      assert.equal(await client.request('{"type":"t","late":1}'), 'late:{"type":"t","late":1}')

      await waitFor(() => server.clients().length === 1)
      const [id] = server.clients()
      assert.equal(server.sendTo(id, arrayBuffer('to one')), true)
      assert.equal(server.broadcast(fragments('to all', 2, 3)), 1)
      await waitFor(() => pushes.length === 2)
      assert.deepEqual(pushes, ['to one', 'to all'])

      for (const bad of [[], [1, 2], ['a', 'b'], [Buffer.from('a'), 'b'], new Uint16Array(2)]) {
        assert.throws(() => client.send(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
        await assert.rejects(client.request(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
        assert.throws(() => server.broadcast(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
        assert.throws(() => server.sendTo('nobody', bad), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
      }
      assert.equal(client.stats().sent, 4)
    } finally {
      await client.close()
      await server.close()
    }
  })

  test(`[${proto}] a ws listener's data goes to send() as it is, whatever the binaryType`, async () => {
    const server = new Server(bindAddress(proto))
    const got = []
    server.route('ws', (raw) => { got.push(raw) })
    const client = new Client(server.endpoint)
    const wss = new WebSocket.WebSocketServer({ port: 0, host: '127.0.0.1' })
    const types = ['nodebuffer', 'arraybuffer', 'fragments']
    wss.on('connection', (ws, req) => {
      ws.binaryType = types[Number(new URL(req.url, 'http://x').searchParams.get('t'))]
      ws.on('message', (data) => client.send(data))
    })
    await once(wss, 'listening')
    try {
      for (let t = 0; t < types.length; t++) {
        const ws = new WebSocket(`ws://127.0.0.1:${wss.address().port}/?t=${t}`)
        await once(ws, 'open')
        ws.send(Buffer.from(`{"type":"ws","t":"${types[t]}","whole":1}`))
        // One message in three frames: ws hands a 'fragments' listener one Buffer per frame.
        ws.send(Buffer.from('{"type":"ws",'), { binary: true, fin: false })
        ws.send(Buffer.from(`"t":"${types[t]}",`), { fin: false })
        ws.send(Buffer.from('"whole":0}'), { fin: true })
        ws.close()
        await once(ws, 'close')
      }
      await waitFor(() => got.length === 6)
      assert.deepEqual(got, types.flatMap((t) => [`{"type":"ws","t":"${t}","whole":1}`, `{"type":"ws","t":"${t}","whole":0}`]))
    } finally {
      wss.close()
      await client.close()
      await server.close()
    }
  })
}
