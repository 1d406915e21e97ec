'use strict'
// Hostile or broken peers against a zerowire Server in a child process: garbage, a truncated
// greeting, floods of tiny frames, frame headers announcing more than maxMessageBytes (up to
// 2^40 bytes, which the unpatched zeromq crate tried to reserve and aborted the process). The
// bad connection is dropped; the server keeps serving. The last test turns it around: a hostile
// "server" announcing 2^40 bytes to a Client. Raw peers are plain node:net sockets, so every
// case runs over ipc:// and tcp://.

const test = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const readline = require('node:readline')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const { Client } = require('..')
const { ROOT, testProtos, bindAddress, netAddress } = require('./helpers')
const { handshake, HI } = require('./peers/zmtp')

/** ZMTP greeting and READY for a ROUTER: what a (hostile) server answers a Client with. */
const routerHandshake = () => handshake('ROUTER')

/** A long-frame header (flags 0x02, or 0x03 with MORE) announcing `size` bytes. */
function longHeader (size, more = false) {
  const header = Buffer.alloc(9)
  header[0] = more ? 0x03 : 0x02
  header.writeBigUInt64BE(BigInt(size), 1)
  return header
}

/** A zerowire Server in a child process; resolves once bound, with the endpoint it reports. */
async function serverProcess (proto, options = {}) {
  const child = spawn(process.execPath, ['-e', `
    const { Server } = require(${JSON.stringify(ROOT)})
    const s = new Server(${JSON.stringify(bindAddress(proto))}, ${JSON.stringify(options)})
    s.route('echo', (raw) => raw)
    console.log(s.endpoint)
  `], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += d })
  const [ep] = await once(readline.createInterface({ input: child.stdout }), 'line')
  return { ep, child, stderr: () => stderr }
}

/** Connects a raw socket, writes `bytes`, and resolves when the server closed it (or 3 s). */
function rawPeer (ep, bytes) {
  return new Promise((resolve) => {
    const sock = net.connect(netAddress(ep), () => sock.write(bytes, () => {}))
    const done = (how) => { clearTimeout(timer); sock.destroy(); resolve(how) }
    const timer = setTimeout(() => done('open'), 3000)
    sock.on('data', () => {})
    sock.on('error', () => done('dropped'))
    sock.on('close', () => done('dropped'))
  })
}

async function stillServes (ep) {
  const c = new Client(ep)
  try {
    return await c.request('{"type":"echo"}', { timeoutMs: 5000 })
  } finally {
    await c.close()
  }
}

const tinyFrames = () => {
  // 100 000 empty frames, each flagged MORE: a message that never ends.
  const f = Buffer.alloc(200_000)
  for (let i = 0; i < 100_000; i++) f[2 * i] = 0x01
  return Buffer.concat([handshake(), f])
}

const cases = {
  'HTTP garbage instead of a greeting': () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(200)),
  'a truncated greeting, then silence': () => handshake().subarray(0, 20),
  'a valid handshake, then 100 000 tiny frames': tinyFrames,
  'a valid handshake, then a frame with a wrong size': () => Buffer.concat([handshake(), Buffer.from([0x00, 0xff]), Buffer.from('short')]),
}
// The cases a server may leave open (a greeting or a message it is still waiting for the rest of):
// each round of raw peers then costs the 3 s of rawPeer.
const LEFT_OPEN = new Set(['a truncated greeting, then silence', 'a valid handshake, then 100 000 tiny frames', 'a valid handshake, then a frame with a wrong size'])

for (const proto of testProtos('ipc', 'tcp')) {
  for (const [name, bytes] of Object.entries(cases)) {
    // Over tcp:// the cases left open run together in one round, below.
    if (proto === 'tcp' && LEFT_OPEN.has(name)) continue
    test(`[${proto}] hostile peer: ${name} — the server keeps serving`, async () => {
      const { ep, child } = await serverProcess(proto)
      await rawPeer(ep, bytes())
      assert.equal(child.exitCode, null, 'server process still running')
      assert.equal(await stillServes(ep), '{"type":"echo"}')
      // Many such connections at once.
      await Promise.all(Array.from({ length: 20 }, () => rawPeer(ep, bytes())))
      assert.equal(await stillServes(ep), '{"type":"echo"}')
      child.kill('SIGKILL')
    })
  }
}

test(`[tcp] hostile peers: ${[...LEFT_OPEN].join('; ')} — 20 of each at once, the server keeps serving`, async () => {
  const { ep, child } = await serverProcess('tcp')
  const peers = [...LEFT_OPEN].flatMap((name) => Array.from({ length: 20 }, () => rawPeer(ep, cases[name]())))
  await Promise.all(peers)
  assert.equal(child.exitCode, null, 'server process still running')
  assert.equal(await stillServes(ep), '{"type":"echo"}')
  child.kill('SIGKILL')
})

// The inbound cap (maxMessageBytes plus 64 KiB for the envelope) is checked on each frame
// header, before anything is reserved for the frame.
const CAP_SERVER = { maxMessageBytes: 1024 }
const capCases = {
  'a frame header announcing 2^40 bytes': () => Buffer.concat([handshake(), longHeader(2 ** 40)]),
  'a frame header announcing 2^63 - 1 bytes': () => Buffer.concat([handshake(), longHeader(2n ** 63n - 1n)]),
  'a well-formed request larger than maxMessageBytes': () => {
    // [corr, body] with a 90 000-byte body > 1024 + 64 KiB. Uncapped, the server would read it
    // and keep the connection open.
    const corr = Buffer.from([0x01, 0x05, 0x01, 1, 0, 0, 0])
    const body = Buffer.alloc(90_000, 0x41)
    return Buffer.concat([handshake(), corr, longHeader(body.length), body])
  },
}

for (const proto of testProtos('ipc', 'tcp')) {
  for (const [name, bytes] of Object.entries(capCases)) {
    test(`[${proto}] hostile peer: ${name} — dropped, the server keeps serving`, async () => {
      const { ep, child, stderr } = await serverProcess(proto, CAP_SERVER)
      assert.equal(await rawPeer(ep, bytes()), 'dropped')
      assert.equal(child.exitCode, null, `server process still running; stderr: ${stderr()}`)
      assert.equal(await stillServes(ep), '{"type":"echo"}')
      child.kill('SIGKILL')
    })
  }
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] a body of exactly maxMessageBytes still arrives, both ways (the cap leaves room for the envelope)`, async () => {
    const { Server } = require('..')
    const server = new Server(bindAddress(proto), { maxMessageBytes: 100_000 })
    server.route('echo', (raw) => raw)
    const c = new Client(server.endpoint, { maxMessageBytes: 100_000 })
    try {
      const body = '{"type":"echo","pad":"' + 'y'.repeat(100_000 - 24) + '"}'
      assert.equal(Buffer.byteLength(body), 100_000)
      assert.equal(await c.request(body, { timeoutMs: 5000 }), body)
    } finally {
      await c.close()
      await server.close()
    }
  })

  test(`[${proto}] a hostile server announcing 2^40 bytes: the Client drops the connection and lives`, async () => {
    let connections = 0
    const raw = net.createServer((sock) => {
      connections++
      sock.on('error', () => {})
      sock.write(Buffer.concat([routerHandshake(), longHeader(2 ** 40)]))
    })
    const ep = bindAddress(proto)
    raw.listen(proto === 'ipc' ? netAddress(ep) : { host: '127.0.0.1', port: 0 })
    await once(raw, 'listening')
    const endpoint = proto === 'ipc' ? ep : `tcp://127.0.0.1:${raw.address().port}`
    const c = new Client(endpoint, { reconnectIntervalMs: 50, requestTimeoutMs: 1000 })
    try {
      await assert.rejects(c.request('{"type":"echo"}'), (err) => ['ECONNRESET', 'ETIMEDOUT'].includes(err.code))
      // It was dropped and tried again: the process neither aborted nor gave up.
      const deadline = Date.now() + 5000
      while (connections < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
      assert.ok(connections >= 2, `connections: ${connections}`)
    } finally {
      await c.close()
      raw.close()
    }
  })
}

for (const proto of testProtos('ipc', 'tcp')) {
  test(`[${proto}] 3 000 plain DEALERs that send one message and close at once leave no ghost clients`, { timeout: 120_000 }, async () => {
    const { Server } = require('..')
    const server = new Server(bindAddress(proto))
    let connects = 0
    server.on('connect', () => { connects++ })
    server.on('message', () => {})
    const hit = () => new Promise((resolve) => {
      const sock = net.connect(netAddress(server.endpoint), () => sock.end(Buffer.concat([handshake(), HI])))
      sock.resume() // read (and ignore) the server's greeting, so that its close is seen
      sock.on('error', resolve)
      sock.on('close', resolve)
    })
    try {
      for (let done = 0; done < 3000; done += 100) await Promise.all(Array.from({ length: 100 }, hit))
      const deadline = Date.now() + 30_000
      while ((connects < 3000 || server.clients().length > 0) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.equal(connects, 3000, 'each was seen')
      assert.deepEqual(server.clients(), [], 'and each was seen leaving')
      assert.equal(server.stats().clients, 0)
    } finally {
      await server.close()
    }
  })
}

// A peer announcing session after session (sequence marks, 20 000 of them) cannot grow the
// server's memory of sessions past its bound: the ones idle longest are forgotten, and a
// replay of a forgotten one is handed on marked redelivered, not dropped. With few sessions,
// the same replay is recognised and dropped as a duplicate.
const SESSION_FLOOD = `
import json, sys, time, zmq
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
flood = int(sys.argv[2])
def reply():
    # Acks (control messages) may come first: the reply is the one with a request's corr.
    while True:
        corr, body = sock.recv_multipart()[:2]
        if corr[:1] == b"\\x01":
            return body
def run(session, seq, resent):
    return json.dumps({"session": "%016x" % session, "seq": seq, "resent": resent}).encode()
sock.send_multipart([b"\\x00H\\x01\\x00\\x00\\x00", b'{"pid":1,"ppid":1,' + run(1, 0, 0)[1:]])
sock.recv_multipart()
sock.send_multipart([b"", b'{"type":"log","n":"first"}'])
# Its reply comes after the handler of "first" ran (in order): session 1 is then idle.
sock.send_multipart([b"\\x01\\x00\\x00\\x00\\x00", b'{"type":"done"}'])
reply()
time.sleep(0.05)
for k in range(flood):
    sock.send_multipart([b"\\x00S\\x02\\x00\\x00\\x00", run(1000 + k, 0, 0)])
    if k % 1000 == 999:
        time.sleep(0.02)
time.sleep(0.2)
sock.send_multipart([b"\\x00S\\x03\\x00\\x00\\x00", run(1, 0, 1)])
sock.send_multipart([b"", b'{"type":"log","n":"again"}'])
sock.send_multipart([b"\\x01\\x01\\x00\\x00\\x00", b'{"type":"done"}'])
print(reply().decode(), flush=True)
`
for (const [flood, forgotten] of [[20_000, true], [100, false]]) {
  test(`a peer announcing ${flood} sessions: ${forgotten ? 'the oldest is forgotten, its replay comes marked redelivered' : 'its replay is recognised and dropped'}`, async () => {
    const { Server } = require('..')
    const server = new Server(bindAddress('ipc'))
    const seen = []
    server.route('log', (raw, ctx) => { seen.push([JSON.parse(raw).n, ctx.redelivered, ctx.messageId]) })
    server.route('done', () => 'done')
    const child = spawn(process.env.PYTHON || 'python3', ['-c', SESSION_FLOOD, server.endpoint, String(flood)], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      const [code] = await once(child, 'exit')
      assert.equal(code, 0)
      const first = ['first', false, '0000000000000001:0']
      if (forgotten) {
        assert.deepEqual(seen, [first, ['again', true, '0000000000000001:0']])
        assert.equal(server.stats().duplicates, 0)
      } else {
        assert.deepEqual(seen, [first])
        assert.equal(server.stats().duplicates, 1)
      }
    } finally {
      child.kill('SIGKILL')
      await server.close()
    }
  })
}

// A goodbye is answered only once what came before it is handled, so the server holds it
// meanwhile: a peer repeating its goodbye while its sends are being handled must not make the
// server hold one per repeat. One is held per client, the latest, and answered once.
const GOODBYE_FLOOD = `
import json, sys, time, zmq
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
repeats = int(sys.argv[2])
sock.send_multipart([b"\\x00H\\x01\\x00\\x00\\x00", json.dumps({"pid": 1, "ppid": 1, "session": "%016x" % 7, "seq": 0, "resent": 0}).encode()])
sock.recv_multipart()
sock.send_multipart([b"", b'{"type":"slow"}'])
time.sleep(0.05)
for k in range(repeats):
    sock.send_multipart([b"\\x00G" + k.to_bytes(4, "little"), b""])
answered = []
poller = zmq.Poller()
poller.register(sock, zmq.POLLIN)
deadline = time.time() + 10
while time.time() < deadline and poller.poll(500 if answered else 10000):
    corr = sock.recv_multipart()[0]
    if corr[:2] == b"\\x00G":
        answered.append(int.from_bytes(corr[2:6], "little"))
print(json.dumps(answered), flush=True)
`
test('a peer repeating its goodbye while its sends are handled: the server holds one, answers the latest once', async () => {
  const { Server } = require('..')
  const server = new Server(bindAddress('ipc'))
  const REPEATS = 20_000
  // Busy long enough for every repeat to be read while the send before them is unhandled.
  server.route('slow', () => {
    const until = Date.now() + 1500
    while (Date.now() < until);
  })
  const child = spawn(process.env.PYTHON || 'python3', ['-c', GOODBYE_FLOOD, server.endpoint, String(REPEATS)], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const [code] = await once(child, 'exit')
    assert.equal(code, 0)
    assert.deepEqual(JSON.parse(out), [REPEATS - 1])
  } finally {
    child.kill('SIGKILL')
    await server.close()
  }
})
