'use strict'
// What a raw ZMTP 3.0 peer writes, for tests and benchmarks that play a misbehaving one.

/** The greeting (NULL mechanism) and READY of a `socketType` peer (DEALER by default). */
function handshake (socketType = 'DEALER') {
  const greeting = Buffer.alloc(64)
  greeting[0] = 0xff
  greeting[9] = 0x7f
  greeting[10] = 3
  greeting.write('NULL', 12)
  const props = Buffer.concat([
    Buffer.from([5]), Buffer.from('READY'),
    Buffer.from([11]), Buffer.from('Socket-Type'), Buffer.from([0, 0, 0, socketType.length]), Buffer.from(socketType),
  ])
  return Buffer.concat([greeting, Buffer.from([0x04, props.length]), props])
}

/** A zerowire fire-and-forget message from a plain DEALER: [empty corr, "hi"]. */
const HI = Buffer.from([0x01, 0x00, 0x00, 2, 0x68, 0x69])

module.exports = { handshake, HI }
