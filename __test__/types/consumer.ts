// A consumer's code, type-checked by __test__/types.test.js against index.d.ts: what a `ws`
// listener hands over goes to zerowire without a cast, errors are read by code, clients and
// servers are disposable and clients iterable.
import { WebSocketServer } from 'ws'
import { Client, Server } from '../../index.js'
import type { Payload, RawData, ZerowireError, ZerowireErrorCode } from '../../index.js'

declare const client: Client
declare const server: Server

new WebSocketServer({ noServer: true }).on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    const sent: boolean = client.send(data)
    const reply: Promise<string> = client.request(data, { timeoutMs: 100 })
    const pushed: number = server.broadcast(data)
    void [sent, reply, pushed, isBinary]
  })
})

const fragments: Buffer[] = [Buffer.from('{"type":'), Buffer.from('"log"}')]
const raw: RawData = new ArrayBuffer(4)
const all: Payload[] = ['s', Buffer.alloc(1), new Uint8Array(1), new ArrayBuffer(1), fragments, raw]
client.send(fragments)
server.sendTo('id', new ArrayBuffer(2))
server.route('echo', (body, ctx) => { ctx.reply(fragments); return undefined })
void all

async function reads (): Promise<void> {
  try {
    await client.request('{"type":"time"}')
  } catch (err) {
    const e = err as ZerowireError
    const code: ZerowireErrorCode = e.code
    if (code === 'ETIMEDOUT' || code === 'ECONNRESET') console.log(e.message)
  }
  client.on('connectError', (err) => {
    const code: string = err.code
    const errno: number | undefined = err.errno
    const endpoint: string | undefined = err.endpoint
    void [code, errno, endpoint]
  })
  for await (const msg of client) {
    const s: string = msg
    void s
  }
  for await (const msg of client.messages({ highWaterMark: 10 })) void msg
  const closing: Promise<void> = client[Symbol.asyncDispose]()
  await closing
  await server[Symbol.asyncDispose]()
}
void reads

async function scoped (): Promise<void> {
  await using s = new Server('tcp://127.0.0.1:0')
  await using c = new Client(s.endpoint)
  await c.request('ping')
}
void scoped

// ipc peer credentials and the server-uid check.
const credServer = new Server('ipc:///tmp/x.sock', {
  authorize: (publicKey: string | null, info) => publicKey === null && info.uid === 0 && typeof info.pid === 'number',
})
credServer.route('who', (_raw, ctx) => JSON.stringify({ uid: ctx.uid, pid: ctx.pid }))
credServer.on('connect', (_id, info) => { const u: number | undefined = info.uid; void u })
const credClient = new Client('ipc:///tmp/x.sock', { expectServerUid: false })
const credClient2 = new Client('ipc:///tmp/x.sock', { expectServerUid: 65534 })
const uidCode: ZerowireErrorCode = 'ERR_ZEROWIRE_PEER_UID'
void credClient; void credClient2; void uidCode
