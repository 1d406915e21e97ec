'use strict'
// Length-prefixed frames for the raw Unix-socket baseline:
//   [u32 LE body length][u8 kind][body]
// kind KIND_COUNT is fire-and-forget (the server counts it), KIND_ECHO is a request the
// server sends back unchanged. One request is in flight at a time, so no correlation id.

const HEADER = 5
const KIND_COUNT = 0
const KIND_ECHO = 1

/** One Buffer per frame, so the socket gets a single write per message. */
function encodeFrame (kind, body) {
  const len = Buffer.byteLength(body)
  const frame = Buffer.allocUnsafe(HEADER + len)
  frame.writeUInt32LE(len, 0)
  frame[4] = kind
  if (typeof body === 'string') frame.write(body, HEADER)
  else body.copy(frame, HEADER)
  return frame
}

/** Reassembles frames from stream chunks; calls onFrame(kind, body, frame) for each. */
class FrameReader {
  constructor (onFrame) {
    this.onFrame = onFrame
    this.pending = null
  }

  push (chunk) {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk])
    let at = 0
    while (buf.length - at >= HEADER) {
      const end = at + HEADER + buf.readUInt32LE(at)
      if (end > buf.length) break
      this.onFrame(buf[at + 4], buf.subarray(at + HEADER, end), buf.subarray(at, end))
      at = end
    }
    this.pending = at === buf.length ? null : buf.subarray(at)
  }
}

module.exports = { encodeFrame, FrameReader, KIND_COUNT, KIND_ECHO }
